package ca

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
)

// OIDEvidence identifies the sigil evidence extension.
//
// The arc is provisional: a UUID arc (2.25, ITU-T X.667) cannot be expressed
// in encoding/asn1's int-sized arcs, and sigil has no registered private
// enterprise number yet. Relying parties should match it by this variable,
// never by a literal.
var OIDEvidence = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 65226, 1, 1}

// Evidence ties a certificate to the attestation that justified it.
type Evidence struct {
	// Digest is the SHA-256 digest of the stored evidence bundle.
	Digest []byte
	// EKHash is the SHA-256 digest of the device's EK public key (PKIX DER).
	EKHash []byte
	// PolicyVersion is the version of the policy set that allowed the identity.
	PolicyVersion string
}

type evidenceASN1 struct {
	Digest        []byte
	EKHash        []byte
	PolicyVersion string `asn1:"utf8"`
}

// maxEvidenceExtension bounds the extension a parser accepts.
const maxEvidenceExtension = 512

func (e Evidence) extension() (pkix.Extension, error) {
	if len(e.Digest) != 32 || len(e.EKHash) != 32 {
		return pkix.Extension{}, errors.New("ca: evidence digest and EK hash must be SHA-256 digests")
	}
	if e.PolicyVersion == "" {
		return pkix.Extension{}, errors.New("ca: evidence without a policy version")
	}
	der, err := asn1.Marshal(evidenceASN1(e))
	if err != nil {
		return pkix.Extension{}, fmt.Errorf("ca: encode evidence extension: %w", err)
	}
	return pkix.Extension{Id: OIDEvidence, Value: der}, nil
}

// EvidenceOf returns the evidence extension of cert. It fails if the
// certificate has none, has several, or carries one that does not parse.
func EvidenceOf(cert *x509.Certificate) (Evidence, error) {
	var found *pkix.Extension
	for i, ext := range cert.Extensions {
		if !ext.Id.Equal(OIDEvidence) {
			continue
		}
		if found != nil {
			return Evidence{}, errors.New("ca: certificate has more than one evidence extension")
		}
		found = &cert.Extensions[i]
	}
	if found == nil {
		return Evidence{}, errors.New("ca: certificate has no evidence extension")
	}
	return parseEvidence(found.Value)
}

func parseEvidence(der []byte) (Evidence, error) {
	if len(der) > maxEvidenceExtension {
		return Evidence{}, fmt.Errorf("ca: evidence extension of %d bytes exceeds %d", len(der), maxEvidenceExtension)
	}
	var v evidenceASN1
	rest, err := asn1.Unmarshal(der, &v)
	if err != nil {
		return Evidence{}, fmt.Errorf("ca: parse evidence extension: %w", err)
	}
	if len(rest) != 0 {
		return Evidence{}, errors.New("ca: trailing data after evidence extension")
	}
	e := Evidence(v)
	if len(e.Digest) != 32 || len(e.EKHash) != 32 || e.PolicyVersion == "" {
		return Evidence{}, errors.New("ca: evidence extension is incomplete")
	}
	return e, nil
}
