package attest

import (
	"crypto"
	"crypto/x509"

	"github.com/google/go-attestation/attest"
)

// VerifyRenewal checks the quotes and event log against the pinned AK and
// nonce, and that the CSR is signed by key, the certificate's TPM key. The
// CSR it returns has had its signature checked (ca.Request's
// CSRSignatureChecked).
func (v *Verifier) VerifyRenewal(r *Renewal, key crypto.PublicKey) (*Boot, *x509.CertificateRequest, error) {
	if err := knownVersion(r.Version); err != nil {
		return nil, nil, &Error{Step: StepInput, Err: err}
	}
	if len(r.Nonce) != NonceSize {
		return nil, nil, fail(StepInput, "nonce of %d bytes, want %d", len(r.Nonce), NonceSize)
	}
	if len(r.AKPublic) == 0 || len(r.AKPublic) > maxTPMBlob {
		return nil, nil, fail(StepAK, "pinned AK public area missing or too large")
	}
	akPub, err := attest.ParseAKPublic(r.AKPublic)
	if err != nil {
		return nil, nil, fail(StepAK, "pinned AK: %v", err)
	}
	boot, err := v.verifyQuotes(akPub, r.Nonce, r.Platform)
	if err != nil {
		return nil, nil, err
	}
	csr, err := verifyCSR(r.CSR, key)
	if err != nil {
		return nil, nil, err
	}
	return boot, csr, nil
}
