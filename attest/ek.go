package attest

import (
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"slices"

	"go.step.sm/crypto/keyutil"
)

// Limits on what a client may send about its EK.
const (
	maxEKCert   = 8 << 10
	maxEKPublic = 2 << 10
)

var (
	oidSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}
	// TCG EK credential profile: tcg-at-tpmManufacturer, -tpmModel, -tpmVersion.
	oidTPMManufacturer = asn1.ObjectIdentifier{2, 23, 133, 2, 1}
	oidTPMModel        = asn1.ObjectIdentifier{2, 23, 133, 2, 2}
	oidTPMVersion      = asn1.ObjectIdentifier{2, 23, 133, 2, 3}
)

// EK is a verified endorsement key.
type EK struct {
	Public crypto.PublicKey
	// Hash is the hex SHA-256 of the EK public key, PKIX DER.
	Hash string
	// Certificate is nil when the EK was trusted through the allow-list.
	Certificate *x509.Certificate
	// Issuer is the EK certificate's issuer DN ("" without a certificate).
	Issuer string
	// Manufacturer, Model and Version come from the EK certificate's SAN.
	Manufacturer, Model, Version string
}

// EKHash returns the hex SHA-256 digest of a PKIX DER public key.
func EKHash(pkix []byte) string {
	sum := sha256.Sum256(pkix)
	return hex.EncodeToString(sum[:])
}

// VerifyEK checks the EK: its certificate chains to one of the verifier's EK
// roots, or its public key hash is allow-listed; a certificate, if given,
// must be for this very key.
func (v *Verifier) VerifyEK(certDER, pubDER []byte) (*EK, error) {
	if len(certDER) > maxEKCert || len(pubDER) > maxEKPublic || len(pubDER) == 0 {
		return nil, fail(StepEK, "EK public key (%d bytes) or certificate (%d bytes) missing or too large", len(pubDER), len(certDER))
	}
	pub, err := x509.ParsePKIXPublicKey(pubDER)
	if err != nil {
		return nil, fail(StepEK, "parse EK public key: %v", err)
	}
	ek := &EK{Public: pub, Hash: EKHash(pubDER)}
	if len(certDER) == 0 {
		if !v.allowed(ek.Hash) {
			return nil, fail(StepEK, "no EK certificate and EK %s is not allow-listed", ek.Hash)
		}
		return ek, nil
	}
	cert, err := v.verifyEKCertificate(certDER)
	if err != nil {
		if v.allowed(ek.Hash) {
			return ek, nil
		}
		return nil, err
	}
	if !keyutil.Equal(cert.PublicKey, pub) {
		return nil, fail(StepEK, "EK certificate is for another key than the EK public key")
	}
	ek.Certificate, ek.Issuer = cert, cert.Issuer.String()
	ek.Manufacturer, ek.Model, ek.Version = tpmInfo(cert)
	return ek, nil
}

func (v *Verifier) allowed(hash string) bool {
	return slices.Contains(v.ekAllow, hash)
}

func (v *Verifier) verifyEKCertificate(der []byte) (*x509.Certificate, error) {
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fail(StepEK, "parse EK certificate: %v", err)
	}
	if err := acceptTPMSAN(cert); err != nil {
		return nil, fail(StepEK, "EK certificate: %v", err)
	}
	if v.ekRoots == nil {
		return nil, fail(StepEK, "EK certificate given but no EK roots are configured")
	}
	_, err = cert.Verify(x509.VerifyOptions{
		Roots: v.ekRoots, Intermediates: v.ekIntermediates,
		CurrentTime: v.now(),
		// EK certificates carry tcg-kp-EKCertificate, which Go does not know.
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return nil, fail(StepEK, "EK certificate does not chain to a configured EK root: %v", err)
	}
	if cert.IsCA {
		return nil, fail(StepEK, "EK certificate is a CA certificate")
	}
	return cert, nil
}
