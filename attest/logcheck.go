package attest

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"

	"github.com/sigil-dev/sigil/audit"
)

// LogChecker re-verifies, offline, the attestation evidence recorded in
// sigil's audit log, as the auditor's audit.VerifyOptions.OnEntry: a server
// that logged an enrollment or a renewal whose evidence does not verify is
// caught, not only one that altered its log. For each device.enrolled
// entry it checks, in order: the evidence decodes (no unknown field), its
// digest is the entry's evidence_digest, it re-verifies (Reverify) against
// the EK roots and its own PCR selection, and it proves the EK, AK and
// SPIFFE ID the entry names. For each certificate.renewed entry: the
// evidence decodes, its digest matches, the device was enrolled earlier in
// the log, the quote is by the AK that enrollment pinned, and it verifies
// (VerifyRenewal) with the enrollment's PCR selection. For each
// enrollment.denied entry that carries evidence (a renewal refused on
// evidence that revoked the device's certificates): the same checks as for
// a renewal, except that verification may fail at the event log
// (QuoteAuthentic) — what it must not do is fail earlier: a server that
// revoked a device on a quote that was not the device's own is caught.
//
// It follows the log in index order and is not safe for concurrent use.
type LogChecker struct {
	roots []*x509.Certificate
	// devices maps an EK hash to what its latest enrollment pinned.
	devices map[string]enrolled
	// Enrollments, Renewals and Refusals count the re-verified entries.
	Enrollments, Renewals, Refusals int
}

// enrolled is what a device's latest enrollment pinned.
type enrolled struct {
	akHash [32]byte // SHA-256 of the AK's public area: all a renewal is compared with
	pcrs   []int
}

// NewLogChecker returns a LogChecker trusting EK certificates issued by
// roots.
func NewLogChecker(roots []*x509.Certificate) *LogChecker {
	return &LogChecker{roots: roots, devices: map[string]enrolled{}}
}

// Entry checks one entry, and ignores entries of other kinds; hand it to
// audit.VerifyOptions.OnEntry.
func (c *LogChecker) Entry(index uint64, e audit.Entry) error {
	if e.Kind != audit.DeviceEnrolled && e.Kind != audit.CertificateRenewed && e.Kind != audit.EnrollmentDenied {
		return nil
	}
	p, err := e.Payload()
	switch {
	case err != nil:
	case e.Kind == audit.DeviceEnrolled:
		err = c.enrollment(p.(*audit.Enrollment))
	case e.Kind == audit.EnrollmentDenied:
		err = c.refusal(p.(*audit.Denial))
	default:
		err = c.renewal(p.(*audit.Certificate))
	}
	if err != nil {
		return fmt.Errorf("%s: %w", e.Kind, err)
	}
	return nil
}

func (c *LogChecker) enrollment(p *audit.Enrollment) error {
	ev, err := ParseEvidence(p.Evidence)
	if err != nil {
		return err
	}
	if err := digestMatches(ev, p.EvidenceDigest); err != nil {
		return err
	}
	v, err := NewVerifier(Config{EKRoots: c.roots, PCRs: ev.PCRs})
	if err != nil {
		return err
	}
	res, err := v.Reverify(ev)
	if err != nil {
		return fmt.Errorf("evidence does not verify: %w", err)
	}
	if res.EK.Hash != p.EKHash || res.AK.Hash != p.AKHash || ev.Identity != p.SPIFFEID {
		return fmt.Errorf("entry names EK %s, AK %s, %s; its evidence proves EK %s, AK %s, %s",
			p.EKHash, p.AKHash, p.SPIFFEID, res.EK.Hash, res.AK.Hash, ev.Identity)
	}
	c.devices[p.EKHash] = enrolled{akHash: sha256.Sum256(ev.AK.Public), pcrs: ev.PCRs}
	c.Enrollments++
	return nil
}

func (c *LogChecker) renewal(p *audit.Certificate) error {
	err := c.verifyRenewal(p.EKHash, p.EvidenceDigest, p.Evidence)
	if err != nil {
		return fmt.Errorf("renewal evidence does not verify: %w", err)
	}
	c.Renewals++
	return nil
}

// refusal checks the evidence of a renewal whose refusal revoked: it must
// be the device's own quote, failing at most at the event log.
func (c *LogChecker) refusal(p *audit.Denial) error {
	if len(p.Evidence) == 0 {
		return nil // a refusal that revoked nothing
	}
	err := c.verifyRenewal(p.EKHash, p.EvidenceDigest, p.Evidence)
	if err != nil && !QuoteAuthentic(err) {
		return fmt.Errorf("the device was revoked on evidence that is not its own quote: %w", err)
	}
	c.Refusals++
	return nil
}

// verifyRenewal checks renewal evidence as logged for the device ekHash
// under digest: it decodes, its digest matches, the device was enrolled
// earlier in the log, the quote is by the AK that enrollment pinned, and
// it verifies (VerifyRenewal, the CSR's key as the certificate's); a
// verification failure is returned as an *Error.
func (c *LogChecker) verifyRenewal(ekHash, digest string, evidence []byte) error {
	r, err := ParseRenewal(evidence)
	if err != nil {
		return err
	}
	if err := digestMatches(r, digest); err != nil {
		return err
	}
	dev, ok := c.devices[ekHash]
	switch {
	case !ok:
		return fmt.Errorf("renewal for EK %s, which the log never enrolled", ekHash)
	case r.EKHash != ekHash || sha256.Sum256(r.AKPublic) != dev.akHash:
		return fmt.Errorf("renewal quote is not by the AK EK %s enrolled with", ekHash)
	}
	csr, err := x509.ParseCertificateRequest(r.CSR)
	if err != nil {
		return fmt.Errorf("renewal CSR: %w", err)
	}
	v, err := NewVerifier(Config{EKRoots: c.roots, PCRs: dev.pcrs})
	if err != nil {
		return err
	}
	_, _, err = v.VerifyRenewal(r, csr.PublicKey)
	return err
}

// digester is Evidence or Renewal.
type digester interface{ Digest() ([]byte, error) }

// digestMatches checks the hex digest of ev is want.
func digestMatches(ev digester, want string) error {
	d, err := ev.Digest()
	if err != nil {
		return err
	}
	if got := hex.EncodeToString(d); got != want {
		return fmt.Errorf("evidence digest is %s, the entry says %s", got, want)
	}
	return nil
}
