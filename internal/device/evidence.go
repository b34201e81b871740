package device

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"

	"github.com/sigil-dev/sigil/attest"
	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/policy"
)

// EvidenceReader is what CertificateFacts reads: the evidence a
// certificate was issued on and its device; store.Reader has it.
type EvidenceReader interface {
	store.EvidenceReader
	store.DeviceReader
}

var _ EvidenceReader = (store.Reader)(nil)

// CertificateFacts re-verifies the evidence the certificate rec was issued
// on and returns the policy facts it was decided on: the enrollment
// evidence (attest.Verifier.Reverify), or a renewal's boot evidence
// (VerifyRenewal) with the device's EK and the renewal's AK. The stored
// bundle must hash to the certificate's evidence digest and be of its EK.
// It takes about a millisecond.
func CertificateFacts(ctx context.Context, r EvidenceReader, v *attest.Verifier, rec store.Certificate) (policy.DeviceFacts, error) {
	ev, err := r.Evidence(ctx, rec.EvidenceDigest)
	if err != nil {
		return policy.DeviceFacts{}, fmt.Errorf("device: evidence of certificate %s: %w", rec.Serial, err)
	}
	if sum := sha256.Sum256(ev.Bundle); hex.EncodeToString(sum[:]) != rec.EvidenceDigest || ev.EKHash != rec.EKHash {
		return policy.DeviceFacts{}, fmt.Errorf("device: evidence %s does not match certificate %s", rec.EvidenceDigest, rec.Serial)
	}
	switch ev.Kind {
	case "enroll":
		return enrollmentFacts(v, ev)
	case "renew":
		return renewalFacts(ctx, r, v, ev, rec)
	}
	return policy.DeviceFacts{}, fmt.Errorf("device: evidence %s of unknown kind %q", ev.Digest, ev.Kind)
}

func enrollmentFacts(v *attest.Verifier, ev store.Evidence) (policy.DeviceFacts, error) {
	e, err := attest.ParseEvidence(ev.Bundle)
	if err != nil {
		return policy.DeviceFacts{}, fmt.Errorf("device: evidence %s: %w", ev.Digest, err)
	}
	res, err := v.Reverify(e)
	if err != nil {
		return policy.DeviceFacts{}, fmt.Errorf("device: evidence %s no longer verifies: %w", ev.Digest, err)
	}
	if res.EK.Hash != ev.EKHash {
		return policy.DeviceFacts{}, fmt.Errorf("device: evidence %s is of another EK", ev.Digest)
	}
	return Facts(res), nil
}

// renewalFacts gives the facts a renewal was decided on: the device's EK
// (and its certificate's issuer) from the device record, the AK that
// quoted, and the boot facts of the quote.
func renewalFacts(ctx context.Context, r store.DeviceReader, v *attest.Verifier, ev store.Evidence, rec store.Certificate) (policy.DeviceFacts, error) {
	ren, err := attest.ParseRenewal(ev.Bundle)
	if err != nil {
		return policy.DeviceFacts{}, fmt.Errorf("device: renewal evidence %s: %w", ev.Digest, err)
	}
	cert, err := x509.ParseCertificate(rec.DER)
	if err != nil {
		return policy.DeviceFacts{}, fmt.Errorf("device: certificate %s: %w", rec.Serial, err)
	}
	boot, _, err := v.VerifyRenewal(ren, cert.PublicKey)
	if err != nil {
		return policy.DeviceFacts{}, fmt.Errorf("device: renewal evidence %s no longer verifies: %w", ev.Digest, err)
	}
	dev, err := r.Device(ctx, ev.EKHash)
	if err != nil {
		return policy.DeviceFacts{}, fmt.Errorf("device: device of renewal evidence %s: %w", ev.Digest, err)
	}
	return RenewalFacts(dev, ren, boot)
}

// CertificateWorkload is what a host agent asserted about the process the
// certificate rec was issued for (evidence format version 2), as policy
// sees it in context.workload; nil when rec was issued without a host
// agent.
func CertificateWorkload(ctx context.Context, r store.EvidenceReader, rec store.Certificate) (*policy.WorkloadFacts, error) {
	ev, err := r.Evidence(ctx, rec.EvidenceDigest)
	if err != nil {
		return nil, fmt.Errorf("device: evidence of certificate %s: %w", rec.Serial, err)
	}
	var w *attest.Workload
	switch ev.Kind {
	case "enroll":
		e, err := attest.ParseEvidence(ev.Bundle)
		if err != nil {
			return nil, fmt.Errorf("device: evidence %s: %w", ev.Digest, err)
		}
		w = e.Workload
	case "renew":
		ren, err := attest.ParseRenewal(ev.Bundle)
		if err != nil {
			return nil, fmt.Errorf("device: renewal evidence %s: %w", ev.Digest, err)
		}
		w = ren.Workload
	}
	if w == nil {
		return nil, nil
	}
	f, err := policy.ParseWorkloadFacts(w.UID, w.GID, w.User, w.Exe, w.ExeSHA256, w.Cgroup, w.Unit)
	if err != nil {
		return nil, fmt.Errorf("device: workload facts of evidence %s: %w", ev.Digest, err)
	}
	return f, nil
}
