package device

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sigil-dev/sigil/audit"
	"github.com/sigil-dev/sigil/internal/store"
)

// CurrentCertificates lists the certificates of the device ekHash that are
// neither revoked nor expired at now, oldest first: what a change of trust
// in the device takes away.
// It reads those only (store.CurrentDeviceCertificates), not the device's
// history, which every renewal lengthens.
func CurrentCertificates(ctx context.Context, r store.CertificateReader, ekHash string, now time.Time) ([]store.Certificate, error) {
	certs, err := r.CurrentDeviceCertificates(ctx, ekHash, now)
	if err != nil {
		return nil, fmt.Errorf("device: certificates of %s: %w", ekHash, err)
	}
	return certs, nil
}

// Distrust is a change of trust in a device that revokes certificates of
// it, and what decided it, as the audit log records it.
type Distrust struct {
	// Reason is the revocation reason: store.ReasonAttestationFailed,
	// store.ReasonAttestationExpired or store.ReasonPolicyChanged.
	Reason string
	// Decision says in one line what decided it: the policy decision
	// (policy.Decision.Reason) or the attestation failure.
	Decision string
	// PolicyVersion and PolicyIDs are the policy set that decided and its
	// deciding policies, if policy decided.
	PolicyVersion string
	PolicyIDs     []string
	// EvidenceDigest names the evidence judged: the refused renewal's, or
	// the evidence a certificate was issued on ("" to cite each
	// certificate's own).
	EvidenceDigest string
}

// Revoke revokes, in tx, each of certs not revoked yet (a certificate
// another transaction revoked first is skipped: of concurrent revocations
// of one certificate exactly one succeeds), and with them every token bound
// to them and exchanged from those (store.RevokeCertificate). It appends
// the audit entries of each revocation to tx and returns what it revoked.
// Call it in the transaction that records anything else the decision
// changed.
func (d Distrust) Revoke(ctx context.Context, tx store.Tx, certs []store.Certificate, now time.Time) (store.Revoked, error) {
	var all store.Revoked
	var entries []store.AuditEntry
	for _, c := range certs {
		got, es, err := revoke(ctx, tx, d.payload(c), now)
		if errors.Is(err, store.ErrConflict) {
			continue // revoked meanwhile, with its own entry
		}
		if err != nil {
			return store.Revoked{}, fmt.Errorf("device: revoke certificate %s: %w", c.Serial, err)
		}
		entries = append(entries, es...)
		all.Certificates = append(all.Certificates, got.Certificates...)
		all.Tokens = append(all.Tokens, got.Tokens...)
	}
	if err := store.AppendAuditEntries(ctx, tx, entries...); err != nil {
		return store.Revoked{}, err
	}
	return all, nil
}

// payload is the CertificateRevoked entry of c.
func (d Distrust) payload(c store.Certificate) audit.Certificate {
	digest := d.EvidenceDigest
	if digest == "" {
		digest = c.EvidenceDigest
	}
	return audit.Certificate{
		Serial: c.Serial, SPIFFEID: c.SPIFFEID, EKHash: c.EKHash, EvidenceDigest: digest,
		PolicyVersion: d.PolicyVersion, NotAfter: c.NotAfter, Reason: d.Reason,
		Decision: d.Decision, PolicyIDs: d.PolicyIDs,
	}
}
