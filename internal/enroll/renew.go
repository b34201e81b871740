package enroll

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
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

// RenewChallenge starts a renewal for the holder of peer, the verified
// client certificate: a nonce for a fresh quote by the pinned AK. Nothing
// is stored: the challenge is MAC'd for this device and certificate (see
// renewChallenge).
func (s *Service) RenewChallenge(ctx context.Context, peer *x509.Certificate) (*api.Challenge, error) {
	rec, dev, err := s.renewable(ctx, peer)
	if err != nil {
		return nil, err
	}
	key, err := challengeKey(ctx, s.Store)
	if err != nil {
		return nil, err
	}
	ch := newRenewChallenge(key, dev.EKHash, rec.Serial, s.now().Add(s.ChallengeTTL))
	return &api.Challenge{ID: ch.ID, Nonce: ch.Nonce(), PCRs: s.Verifier.PCRs(), ExpiresAt: ch.ExpiresAt, AKHash: dev.AKHash}, nil
}

// Renew verifies a fresh quote by the device's pinned AK and a CSR by the
// certificate's key, asks policy, and issues a new certificate for the same
// identity and key. The challenge is burnt whatever the outcome: in the
// transaction that records the certificate, or the revocation, or alone.
func (s *Service) Renew(ctx context.Context, peer *x509.Certificate, req api.RenewRequest) (*Issued, error) {
	ch, err := s.renewChallenge(ctx, peer, req.ChallengeID)
	if err != nil {
		return nil, err
	}
	issued, err := s.renew(ctx, ch, peer, req)
	if err == nil {
		return issued, nil
	}
	var revoked *RevokedError
	if !errors.As(err, &revoked) && !errors.Is(err, ErrNotRecorded) {
		// a revocation recorded its refusal, and burnt the challenge, with it
		s.recordDenial(ctx, store.Challenge{SPIFFEID: ch.identity, EKHash: ch.ekHash}, err)
	}
	if !errors.Is(err, ErrChallengeUsed) {
		if berr := s.Store.UseChallenge(ctx, ch.ID, ch.ExpiresAt); berr != nil && !errors.Is(berr, store.ErrChallengeUsed) {
			s.Log.ErrorContext(ctx, "enroll: cannot burn a renewal challenge", "ek_hash", ch.ekHash, "err", berr)
		}
	}
	return nil, err
}

// issuedChallenge is a renewal challenge checked against the certificate
// and device it names.
type issuedChallenge struct {
	renewChallenge
	identity, ekHash string
	rec              store.Certificate
	dev              store.Device
}

// renewChallenge parses id and checks that this store's key MAC'd it for
// peer's certificate and device, that it has not expired and was not used.
func (s *Service) renewChallenge(ctx context.Context, peer *x509.Certificate, id string) (issuedChallenge, error) {
	if id == "" || len(id) > 64 {
		return issuedChallenge{}, fmt.Errorf("%w: challenge id missing or too long", ErrBadRequest)
	}
	c, err := parseRenewChallenge(id)
	if err != nil {
		if _, serr := s.Store.Challenge(ctx, id); serr == nil {
			return issuedChallenge{}, fmt.Errorf("%w: challenge %q is for enroll, not renew", ErrBadRequest, id)
		}
		return issuedChallenge{}, fmt.Errorf("%w: %q: %w", ErrUnknownChallenge, id, err)
	}
	rec, dev, err := s.renewable(ctx, peer)
	if err != nil {
		return issuedChallenge{}, err
	}
	key, err := challengeKey(ctx, s.Store)
	if err != nil {
		return issuedChallenge{}, err
	}
	if !c.verify(key, rec.EKHash, rec.Serial) {
		return issuedChallenge{}, fmt.Errorf("%w: challenge %q was not issued here for certificate %s: it belongs to another certificate or is forged", ErrBadRequest, id, rec.Serial)
	}
	if !s.now().Before(c.ExpiresAt) {
		return issuedChallenge{}, fmt.Errorf("%w: %q expired at %s", ErrChallengeExpired, id, c.ExpiresAt.UTC().Format(time.RFC3339))
	}
	if !c.expiresWithin(s.now(), s.ChallengeTTL) {
		return issuedChallenge{}, fmt.Errorf("%w: challenge %q expires at %s, later than any challenge issued here: forged with the challenge key", ErrBadRequest, id, c.ExpiresAt.UTC().Format(time.RFC3339))
	}
	used, err := s.Store.ChallengeUsed(ctx, id)
	switch {
	case err != nil:
		return issuedChallenge{}, fmt.Errorf("enroll: challenge state: %w", err)
	case used:
		return issuedChallenge{}, fmt.Errorf("%w: %q", ErrChallengeUsed, id)
	}
	return issuedChallenge{renewChallenge: c, identity: rec.SPIFFEID, ekHash: rec.EKHash, rec: rec, dev: dev}, nil
}

// renew checks the evidence for ch, whose certificate and device
// renewChallenge found renewable.
func (s *Service) renew(ctx context.Context, ch issuedChallenge, peer *x509.Certificate, req api.RenewRequest) (*Issued, error) {
	rec, dev := ch.rec, ch.dev
	if req.AKHash != "" && req.AKHash != dev.AKHash {
		return nil, akReplaced(dev, req.AKHash)
	}
	ev := &attest.Renewal{
		Version: attest.EvidenceVersion, Identity: rec.SPIFFEID, Previous: rec.Serial, EKHash: dev.EKHash,
		AKPublic: dev.AKPublic, Nonce: ch.Nonce(), Platform: platform(req.Platform), CSR: req.CSR, VerifiedAt: s.now().UTC(),
	}
	if err := ev.SetWorkload(workloadEvidence(req.Workload)); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	boot, csr, err := s.Verifier.VerifyRenewal(ev, peer.PublicKey)
	if attest.QuoteAuthentic(err) {
		// The device's own quote, over our nonce, that its event log does
		// not explain: its boot state is not what it claims.
		return nil, s.distrust(ctx, dev, ev, nil, ch.renewChallenge, err)
	}
	if attest.StepOf(err) == attest.StepQuote {
		if ak := s.issuedUnder(ctx, rec); ak != "" && ak != dev.AKHash {
			return nil, fmt.Errorf("%w (%w)", akReplaced(dev, ak), err)
		}
	}
	if err != nil {
		return nil, err // anyone could have sent this: it says nothing about the device
	}
	return s.reissue(ctx, peer, dev, ev, boot, csr, ch.renewChallenge)
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

func (s *Service) reissue(ctx context.Context, peer *x509.Certificate, dev store.Device, ev *attest.Renewal, boot *attest.Boot, csr *x509.CertificateRequest, ch renewChallenge) (*Issued, error) {
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
		return nil, s.distrust(ctx, dev, ev, &facts, ch, &DeniedError{Identity: id.String() + " (renewal)", Decision: d})
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
	if err := s.recordRenewal(ctx, ev, cert, bundle, hex.EncodeToString(digest), d.Version, held, ch); err != nil {
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
// transaction, which burns the challenge ch, after checking again that the
// certificate renewed, ev.Previous, is not revoked and that no other device
// came to hold the identity since policy decided. (Its device being
// disabled meanwhile is InsertCertificate's refusal.)
func (s *Service) recordRenewal(ctx context.Context, ev *attest.Renewal, cert *x509.Certificate, bundle []byte, digest, version string, held holders, ch renewChallenge) error {
	now := s.now()
	logged, err := certificateEntry(audit.CertificateRenewed, cert, ev.EKHash, digest, version, bundle, now)
	if err != nil {
		return err
	}
	err = s.Store.Tx(ctx, func(tx store.Tx) error {
		if err := tx.UseChallenge(ctx, ch.ID, ch.ExpiresAt); err != nil {
			return err
		}
		if err := stillLive(ctx, tx, ev.Previous); err != nil {
			return err
		}
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
	switch {
	case errors.Is(err, store.ErrChallengeUsed):
		return fmt.Errorf("%w: %q (by a concurrent renewal)", ErrChallengeUsed, ch.ID)
	case errors.Is(err, ErrNotRenewable):
		return err
	case err == nil:
		s.nudge()
	}
	return recordErr("renewal", err)
}

// stillLive checks in tx, the transaction that records a renewal, that the
// certificate renewed (serial) has not been revoked since renewable read
// it: a revocation that commits first refuses the renewal; one that
// commits later revokes a certificate already renewed, as it would have
// had the renewal finished earlier.
func stillLive(ctx context.Context, tx store.CertificateReader, serial string) error {
	rec, err := tx.Certificate(ctx, serial)
	if err != nil {
		return fmt.Errorf("enroll: look up certificate %s again: %w", serial, err)
	}
	if rec.RevokedAt != nil {
		return fmt.Errorf("%w: certificate %s was revoked while it renewed (%s)", ErrNotRenewable, serial, rec.RevocationReason)
	}
	return nil
}
