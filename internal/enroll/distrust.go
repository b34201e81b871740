package enroll

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/sigil-dev/sigil/attest"
	"github.com/sigil-dev/sigil/audit"
	"github.com/sigil-dev/sigil/internal/device"
	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/policy"
)

// RevokedError is a renewal refused on authentic evidence that no longer
// satisfies policy: the quote was the device's own (its bound AK over the
// server's nonce), so the refusal is a fact about the device, and the
// device's certificates that the new evidence no longer supports were
// revoked, with their tokens. Answer as for the refusal it wraps (403),
// saying that the certificates were revoked.
type RevokedError struct {
	Reason  string        // the revocation reason, store.ReasonAttestationFailed
	Revoked store.Revoked // what was revoked
	Err     error         // the refusal: an *attest.Error or a *DeniedError
}

func (e *RevokedError) Error() string {
	return fmt.Sprintf("%v; revoked %d certificates of the device and %d tokens (%s)",
		e.Err, len(e.Revoked.Certificates), len(e.Revoked.Tokens), e.Reason)
}

func (e *RevokedError) Unwrap() error { return e.Err }

// distrust acts on a renewal of dev refused on authentic evidence ev: it
// revokes the device's current certificates that the evidence no longer
// supports — all of them when the event log failed (facts is nil: nothing
// the device says about its boot can be believed), else those whose
// identity policy denies the device on facts — and records the refusal,
// with the evidence, and each revocation in one transaction. It returns the
// error to answer: a *RevokedError wrapping cause, or cause itself if
// nothing was left to revoke.
func (s *Service) distrust(ctx context.Context, dev store.Device, ev *attest.Renewal, facts *policy.DeviceFacts, ch renewChallenge, cause error) error {
	now := s.now()
	certs, err := device.CurrentCertificates(ctx, s.Store, dev.EKHash, now)
	if err != nil {
		return fmt.Errorf("%w (and the device's certificates could not be read: %v)", cause, err)
	}
	bundle, digest, err := ev.Encode()
	if err != nil {
		return fmt.Errorf("%w (and the evidence could not be encoded: %v)", cause, err)
	}
	refusal := denial(ev, cause)
	refusal.EvidenceDigest, refusal.Evidence = hex.EncodeToString(digest), bundle
	var revoked store.Revoked
	err = s.Store.Tx(ctx, func(tx store.Tx) error {
		// A concurrent attempt with the same challenge may have burnt it:
		// the quote is still the device's own, so revoke all the same.
		if err := tx.UseChallenge(ctx, ch.ID, ch.ExpiresAt); err != nil && !errors.Is(err, store.ErrChallengeUsed) {
			return err
		}
		logged, err := store.NewAuditEntry(audit.EnrollmentDenied, now, refusal)
		if err != nil {
			return err
		}
		if err := store.AppendAuditEntries(ctx, tx, logged); err != nil {
			return err
		}
		revoked, err = s.revokeUnsupported(ctx, tx, certs, facts, refusal, now)
		return err
	})
	if err != nil {
		s.Log.ErrorContext(ctx, "enroll: cannot revoke the certificates of a device that failed re-attestation",
			"ek_hash", dev.EKHash, "refusal", cause, "err", err)
		return fmt.Errorf("%w: %w (revoking the device's certificates failed: %v)", ErrNotRecorded, cause, err)
	}
	s.nudge()
	s.Log.WarnContext(ctx, "enroll: re-attestation failed, device certificates revoked", "ek_hash", dev.EKHash,
		"refusal", cause, "certificates", revoked.Certificates, "tokens", len(revoked.Tokens))
	if len(revoked.Certificates) == 0 {
		return cause
	}
	return &RevokedError{Reason: store.ReasonAttestationFailed, Revoked: revoked, Err: cause}
}

// revokeUnsupported revokes, in tx, the certificates of certs that facts no
// longer support (all of them if facts is nil), each with the decision that
// took it away.
func (s *Service) revokeUnsupported(ctx context.Context, tx store.Tx, certs []store.Certificate, facts *policy.DeviceFacts, refusal audit.Denial, now time.Time) (store.Revoked, error) {
	var all store.Revoked
	for _, c := range certs {
		d := device.Distrust{
			Reason: store.ReasonAttestationFailed, Decision: refusal.Reason,
			PolicyVersion: refusal.PolicyVersion, PolicyIDs: refusal.PolicyIDs, EvidenceDigest: refusal.EvidenceDigest,
		}
		if facts != nil {
			held, err := otherHolders(ctx, tx, c.SPIFFEID, c.EKHash, now)
			if err != nil {
				return store.Revoked{}, err
			}
			dec := s.Policy.Decide(policy.EnrollRequest{Action: policy.Renew, Device: *facts, Identity: c.SPIFFEID, OtherHolders: held.digests})
			if dec.Allowed {
				continue
			}
			d.Decision, d.PolicyVersion, d.PolicyIDs = dec.Reason(), dec.Version, dec.PolicyIDs
		}
		got, err := d.Revoke(ctx, tx, []store.Certificate{c}, now)
		if err != nil {
			return store.Revoked{}, err
		}
		all.Certificates = append(all.Certificates, got.Certificates...)
		all.Tokens = append(all.Tokens, got.Tokens...)
	}
	return all, nil
}

// denial is the audit payload of a refused renewal or enrollment.
func denial(ev *attest.Renewal, cause error) audit.Denial {
	d := audit.Denial{SPIFFEID: ev.Identity, EKHash: ev.EKHash, Reason: cause.Error()}
	var denied *DeniedError
	if errors.As(cause, &denied) {
		d.Reason, d.PolicyVersion, d.PolicyIDs = denied.Decision.Reason(), denied.Decision.Version, denied.Decision.PolicyIDs
	}
	return d
}
