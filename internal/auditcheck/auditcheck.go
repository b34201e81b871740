// Package auditcheck re-verifies, offline, the attestation evidence recorded
// in sigil's audit log: a server that logged an enrollment or a renewal whose
// evidence does not verify is caught, not only one that altered its log.
package auditcheck

import (
	"bytes"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"

	"github.com/sigil-dev/sigil/attest"
	"github.com/sigil-dev/sigil/audit"
)

// Checker follows the log in order. It is not safe for concurrent use.
type Checker struct {
	roots []*x509.Certificate
	// devices maps an EK hash to what its latest enrollment pinned.
	devices map[string]device
	// Enrollments and Renewals count the re-verified entries.
	Enrollments, Renewals int
}

type device struct {
	akPublic []byte
	pcrs     []int
}

// New returns a Checker trusting EK certificates issued by roots.
func New(roots []*x509.Certificate) *Checker {
	return &Checker{roots: roots, devices: map[string]device{}}
}

// Entry checks one entry; hand it to audit.VerifyOptions.OnEntry.
func (c *Checker) Entry(index uint64, e audit.Entry) error {
	var err error
	switch e.Kind {
	case audit.DeviceEnrolled:
		err = c.enrollment(e.Data)
	case audit.CertificateRenewed:
		err = c.renewal(e.Data)
	default:
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s: %w", e.Kind, err)
	}
	return nil
}

func (c *Checker) enrollment(data json.RawMessage) error {
	var p audit.Enrollment
	if err := strictJSON(data, &p); err != nil {
		return err
	}
	var ev attest.Evidence
	if err := strictJSON(p.Evidence, &ev); err != nil {
		return fmt.Errorf("evidence: %w", err)
	}
	if err := digestMatches(&ev, p.EvidenceDigest); err != nil {
		return err
	}
	v, err := attest.NewVerifier(attest.Config{EKRoots: c.roots, PCRs: ev.PCRs})
	if err != nil {
		return err
	}
	res, err := v.Reverify(&ev)
	if err != nil {
		return fmt.Errorf("evidence does not verify: %w", err)
	}
	if res.EK.Hash != p.EKHash || res.AK.Hash != p.AKHash || ev.Identity != p.SPIFFEID {
		return fmt.Errorf("entry names EK %s, AK %s, %s; its evidence proves EK %s, AK %s, %s",
			p.EKHash, p.AKHash, p.SPIFFEID, res.EK.Hash, res.AK.Hash, ev.Identity)
	}
	c.devices[p.EKHash] = device{akPublic: ev.AK.Public, pcrs: ev.PCRs}
	c.Enrollments++
	return nil
}

func (c *Checker) renewal(data json.RawMessage) error {
	var p audit.Certificate
	if err := strictJSON(data, &p); err != nil {
		return err
	}
	var r attest.Renewal
	if err := strictJSON(p.Evidence, &r); err != nil {
		return fmt.Errorf("evidence: %w", err)
	}
	if err := digestMatches(&r, p.EvidenceDigest); err != nil {
		return err
	}
	dev, ok := c.devices[p.EKHash]
	switch {
	case !ok:
		return fmt.Errorf("renewal for EK %s, which the log never enrolled", p.EKHash)
	case r.EKHash != p.EKHash || !bytes.Equal(r.AKPublic, dev.akPublic):
		return fmt.Errorf("renewal quote is not by the AK EK %s enrolled with", p.EKHash)
	}
	csr, err := x509.ParseCertificateRequest(r.CSR)
	if err != nil {
		return fmt.Errorf("renewal CSR: %w", err)
	}
	v, err := attest.NewVerifier(attest.Config{EKRoots: c.roots, PCRs: dev.pcrs})
	if err != nil {
		return err
	}
	if _, _, err := v.VerifyRenewal(&r, csr.PublicKey); err != nil {
		return fmt.Errorf("renewal evidence does not verify: %w", err)
	}
	c.Renewals++
	return nil
}

type digester interface{ Digest() ([]byte, error) }

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

func strictJSON(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}
