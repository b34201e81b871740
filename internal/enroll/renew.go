package enroll

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/sigil-dev/sigil/api"
	"github.com/sigil-dev/sigil/attest"
	"github.com/sigil-dev/sigil/audit"
	"github.com/sigil-dev/sigil/ca"
	"github.com/sigil-dev/sigil/identity"
	"github.com/sigil-dev/sigil/internal/device"
	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/policy"
)

// ErrNotRenewable: the client certificate is unknown to this server, revoked
// or its device disabled (403); the workload must enroll again.
var ErrNotRenewable = errors.New("certificate not renewable")

// renewSecret fills the secret hash of renewal challenges, which activate no
// credential: the AK is pinned by the device record instead.
var renewSecret = sha256.Sum256([]byte("sigil renewal: no credential"))

// RenewChallenge starts a renewal for the holder of peer, the verified
// client certificate: a nonce for a fresh quote by the pinned AK.
func (s *Service) RenewChallenge(ctx context.Context, peer *x509.Certificate) (*api.Challenge, error) {
	rec, dev, err := s.renewable(ctx, peer)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, attest.NonceSize)
	_, _ = rand.Read(nonce) // crypto/rand.Read never fails
	state, _ := json.Marshal(renewState{Serial: rec.Serial})
	now := s.now()
	ch := store.Challenge{
		ID: randomID(), EKHash: dev.EKHash, AKHash: dev.AKHash, Nonce: nonce, SecretHash: renewSecret[:],
		SPIFFEID: rec.SPIFFEID, Kind: store.ChallengeRenew, Pending: state, CreatedAt: now, ExpiresAt: now.Add(s.ChallengeTTL),
	}
	if err := s.Store.CreateChallenge(ctx, ch); err != nil {
		return nil, fmt.Errorf("enroll: store challenge: %w", err)
	}
	return &api.Challenge{ID: ch.ID, Nonce: nonce, PCRs: s.Verifier.PCRs(), ExpiresAt: ch.ExpiresAt, AKHash: dev.AKHash}, nil
}

type renewState struct {
	Serial string `json:"serial"`
}

// Renew verifies a fresh quote by the device's pinned AK and a CSR by the
// certificate's key, asks policy, and issues a new certificate for the same
// identity and key. The challenge is burnt whatever the outcome.
func (s *Service) Renew(ctx context.Context, peer *x509.Certificate, req api.RenewRequest) (*Issued, error) {
	ch, err := s.consume(ctx, req.ChallengeID, store.ChallengeRenew)
	if err != nil {
		return nil, err
	}
	issued, err := s.renew(ctx, ch, peer, req)
	var revoked *RevokedError
	if err != nil && !errors.As(err, &revoked) && !errors.Is(err, ErrNotRecorded) {
		s.recordDenial(ctx, ch, err) // a revocation recorded its refusal with it
	}
	return issued, err
}

func (s *Service) renew(ctx context.Context, ch store.Challenge, peer *x509.Certificate, req api.RenewRequest) (*Issued, error) {
	var st renewState
	if err := json.Unmarshal(ch.Pending, &st); err != nil || st.Serial != device.Serial(peer) {
		return nil, fmt.Errorf("%w: the challenge belongs to another certificate", ErrBadRequest)
	}
	rec, dev, err := s.renewable(ctx, peer)
	if err != nil {
		return nil, err
	}
	if dev.AKHash != ch.AKHash {
		return nil, fmt.Errorf("%w: device %s was bound to AK %s since the challenge (sigil enroll --replace-ak); start the renewal again", ErrAKReplaced, dev.EKHash, dev.AKHash)
	}
	if req.AKHash != "" && req.AKHash != dev.AKHash {
		return nil, akReplaced(dev, req.AKHash)
	}
	ev := &attest.Renewal{
		Version: attest.EvidenceVersion, Identity: ch.SPIFFEID, Previous: st.Serial, EKHash: dev.EKHash,
		AKPublic: dev.AKPublic, Nonce: ch.Nonce, Platform: platform(req.Platform), CSR: req.CSR, VerifiedAt: s.now().UTC(),
	}
	if err := ev.SetWorkload(workloadEvidence(req.Workload)); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	boot, csr, err := s.Verifier.VerifyRenewal(ev, peer.PublicKey)
	if attest.QuoteAuthentic(err) {
		// The device's own quote, over our nonce, that its event log does
		// not explain: its boot state is not what it claims.
		return nil, s.distrust(ctx, dev, ev, nil, err)
	}
	if attest.StepOf(err) == attest.StepQuote {
		if ak := s.issuedUnder(ctx, rec); ak != "" && ak != dev.AKHash {
			return nil, fmt.Errorf("%w (%w)", akReplaced(dev, ak), err)
		}
	}
	if err != nil {
		return nil, err // anyone could have sent this: it says nothing about the device
	}
	return s.reissue(ctx, peer, dev, ev, boot, csr)
}

// akReplaced is the refusal of a renewal by a workload that quoted with,
// or was issued under, AK old, which the device is no longer bound to.
func akReplaced(dev store.Device, old string) error {
	return fmt.Errorf("%w: this workload quotes with AK %s, but device %s has been bound to AK %s since %s; %s",
		ErrAKReplaced, old, dev.EKHash, dev.AKHash, dev.UpdatedAt.UTC().Format(time.RFC3339), akRecovery)
}

// issuedUnder is the AK hash of the evidence rec was issued on, "" when it
// cannot be read: a diagnosis only.
func (s *Service) issuedUnder(ctx context.Context, rec store.Certificate) string {
	e, err := s.Store.Evidence(ctx, rec.EvidenceDigest)
	if err != nil {
		return ""
	}
	switch e.Kind {
	case "enroll":
		if ev, err := attest.ParseEvidence(e.Bundle); err == nil {
			return hashHex(ev.AK.Public)
		}
	case "renew":
		if r, err := attest.ParseRenewal(e.Bundle); err == nil {
			return hashHex(r.AKPublic)
		}
	}
	return ""
}

func hashHex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func (s *Service) reissue(ctx context.Context, peer *x509.Certificate, dev store.Device, ev *attest.Renewal, boot *attest.Boot, csr *x509.CertificateRequest) (*Issued, error) {
	id, err := identity.Workload(ev.Identity)
	if err != nil {
		return nil, fmt.Errorf("enroll: stored identity: %w", err)
	}
	facts, err := device.RenewalFacts(dev, ev, boot)
	if err != nil {
		return nil, fmt.Errorf("enroll: %w", err)
	}
	held, err := otherHolders(ctx, s.Store, id.String(), dev.EKHash, s.now())
	if err != nil {
		return nil, err
	}
	mine, err := deviceIdentities(ctx, s.Store, dev.EKHash, s.now())
	if err != nil {
		return nil, err
	}
	w, err := workloadFacts(ev.Workload)
	if err != nil {
		return nil, err
	}
	d := s.Policy.Decide(policy.EnrollRequest{Action: policy.Renew, Device: facts, Identity: id.String(), OtherHolders: held.digests,
		DeviceIdentities: mine, Workload: w})
	if !d.Allowed {
		// The facts are the device's own, verified: policy no longer
		// permits what they show.
		return nil, s.distrust(ctx, dev, ev, &facts, &DeniedError{Identity: id.String() + " (renewal)", Decision: d})
	}
	bundle, digest, err := ev.Encode()
	if err != nil {
		return nil, fmt.Errorf("enroll: evidence: %w", err)
	}
	ekHash, _ := hex.DecodeString(dev.EKHash)
	cert, err := s.CA.Issue(ctx, ca.Request{
		CSR: csr, CSRSignatureChecked: true, Key: peer.PublicKey, ID: id, ServerAuth: slices.Contains(peer.ExtKeyUsage, x509.ExtKeyUsageServerAuth),
		Evidence: ca.Evidence{Digest: digest, EKHash: ekHash, PolicyVersion: d.Version},
	})
	if err != nil {
		return nil, err
	}
	if err := s.recordRenewal(ctx, ev, cert, bundle, hex.EncodeToString(digest), d.Version, held); err != nil {
		return nil, err
	}
	return &Issued{Certificate: s.answer(cert, digest, d.Version), Decision: d}, nil
}

// renewable checks that peer is a certificate this server issued, not
// revoked, of an active device.
func (s *Service) renewable(ctx context.Context, peer *x509.Certificate) (store.Certificate, store.Device, error) {
	if peer == nil {
		return store.Certificate{}, store.Device{}, fmt.Errorf("%w: renewal needs the current certificate as TLS client certificate", ErrNotRenewable)
	}
	rec, err := s.Store.Certificate(ctx, device.Serial(peer))
	switch {
	case errors.Is(err, store.ErrNotFound):
		return rec, store.Device{}, fmt.Errorf("%w: certificate %s was not issued here", ErrNotRenewable, device.Serial(peer))
	case err != nil:
		return rec, store.Device{}, fmt.Errorf("enroll: look up certificate: %w", err)
	case !bytes.Equal(rec.DER, peer.Raw):
		return rec, store.Device{}, fmt.Errorf("%w: certificate %s is not the one issued here under that serial", ErrNotRenewable, device.Serial(peer))
	case rec.RevokedAt != nil:
		return rec, store.Device{}, fmt.Errorf("%w: certificate %s is revoked (%s)", ErrNotRenewable, rec.Serial, rec.RevocationReason)
	}
	dev, err := s.Store.Device(ctx, rec.EKHash)
	if err != nil {
		return rec, dev, fmt.Errorf("enroll: look up device: %w", err)
	}
	if dev.Status == store.DeviceDisabled {
		return rec, dev, fmt.Errorf("%w: EK %s", ErrDeviceDisabled, dev.EKHash)
	}
	return rec, dev, nil
}

// recordRenewal stores the renewal's evidence (bundle, its encoding, whose
// SHA-256 is digest), the certificate and its audit entry in one
// transaction, after checking again that no other device came to hold the
// identity since policy decided.
func (s *Service) recordRenewal(ctx context.Context, ev *attest.Renewal, cert *x509.Certificate, bundle []byte, digest, version string, held holders) error {
	now := s.now()
	logged, err := certificateEntry(audit.CertificateRenewed, cert, ev.EKHash, digest, version, bundle, now)
	if err != nil {
		return err
	}
	err = s.Store.Tx(ctx, func(tx store.Tx) error {
		if err := held.recheck(ctx, tx, now); err != nil {
			return err
		}
		if err := tx.PutEvidence(ctx, store.Evidence{Digest: digest, EKHash: ev.EKHash, Kind: "renew", Bundle: bundle, CreatedAt: now}); err != nil {
			return err
		}
		if err := tx.InsertCertificate(ctx, certificateRecord(cert, ev.EKHash, digest, version)); err != nil {
			return err
		}
		return store.AppendAuditEntries(ctx, tx, logged)
	})
	if err == nil {
		s.nudge()
	}
	return recordErr("renewal", err)
}
