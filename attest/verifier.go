package attest

import (
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Verifier holds the trust configuration: which EKs to trust and which PCRs
// a quote must cover. It is safe for concurrent use.
type Verifier struct {
	ekRoots         *x509.CertPool
	ekIntermediates *x509.CertPool
	ekAllow         []string
	pcrs            []int
	now             func() time.Time
	secureBoot      *secureBootCache
}

// Config is the trust configuration of a Verifier.
type Config struct {
	// EKRoots are the CAs that issue EK certificates.
	EKRoots []*x509.Certificate
	// EKIntermediates may complete EK certificate chains.
	EKIntermediates []*x509.Certificate
	// EKAllow lists hex SHA-256 digests of EK public keys (PKIX DER)
	// trusted without a certificate.
	EKAllow []string
	// PCRs are the SHA-256 PCR indexes every quote must cover.
	PCRs []int
}

// NewVerifier returns a Verifier for c.
func NewVerifier(c Config) (*Verifier, error) {
	if len(c.EKRoots) == 0 && len(c.EKAllow) == 0 {
		return nil, errors.New("attest: no EK roots and no allow-listed EKs: no TPM could enroll")
	}
	if len(c.PCRs) == 0 {
		return nil, errors.New("attest: no PCRs to quote")
	}
	v := &Verifier{pcrs: slices.Sorted(slices.Values(c.PCRs)), now: time.Now, secureBoot: newSecureBootCache(secureBootCacheSize)}
	v.pcrs = slices.Compact(v.pcrs)
	if len(c.EKRoots) > 0 {
		v.ekRoots, v.ekIntermediates = x509.NewCertPool(), x509.NewCertPool()
		for _, r := range c.EKRoots {
			v.ekRoots.AddCert(r)
		}
		for _, r := range c.EKIntermediates {
			v.ekIntermediates.AddCert(r)
		}
	}
	for _, h := range c.EKAllow {
		h = strings.ToLower(h)
		if b, err := hex.DecodeString(h); err != nil || len(b) != 32 {
			return nil, fmt.Errorf("attest: EK allow-list entry %q is not a hex SHA-256 digest", h)
		}
		v.ekAllow = append(v.ekAllow, h)
	}
	return v, nil
}

// PCRs returns the SHA-256 PCR indexes every quote must cover.
func (v *Verifier) PCRs() []int { return slices.Clone(v.pcrs) }
