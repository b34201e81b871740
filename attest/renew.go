package attest

import (
	"crypto"
	"crypto/x509"
	"time"

	"github.com/google/go-attestation/attest"

	"github.com/sigil-dev/sigil/api"
)

// Renewal is the evidence of a certificate renewal: a fresh quote by the AK
// the device was bound to at enrollment, over the renewal nonce, and a CSR by
// the certificate's own key. It holds no secret and re-verifies offline.
type Renewal struct {
	Version  int    `json:"version"`
	Identity string `json:"identity"`
	// Previous is the serial (hex) of the certificate being renewed.
	Previous string `json:"previous_serial"`
	EKHash   string `json:"ek_hash"`
	// AKPublic is the pinned AK's TPMT_PUBLIC, from the device record.
	AKPublic   []byte       `json:"ak_public"`
	Nonce      []byte       `json:"nonce"`
	Platform   api.Platform `json:"platform"`
	CSR        []byte       `json:"csr"`
	VerifiedAt time.Time    `json:"verified_at"`
}

// Digest is the SHA-256 of the renewal's JSON encoding.
func (r *Renewal) Digest() ([]byte, error) { return digestJSON(r) }

// VerifyRenewal checks the quotes and event log against the pinned AK and
// nonce, and that the CSR is signed by key, the certificate's TPM key.
func (v *Verifier) VerifyRenewal(r *Renewal, key crypto.PublicKey) (*Boot, *x509.CertificateRequest, error) {
	if r.Version != EvidenceVersion || len(r.Nonce) != NonceSize {
		return nil, nil, fail(StepInput, "renewal version %d or nonce size %d is wrong", r.Version, len(r.Nonce))
	}
	if len(r.AKPublic) == 0 || len(r.AKPublic) > maxTPMBlob {
		return nil, nil, fail(StepAK, "pinned AK public area missing or too large")
	}
	if _, err := attest.ParseAKPublic(r.AKPublic); err != nil {
		return nil, nil, fail(StepAK, "pinned AK: %v", err)
	}
	ak := &AK{Hash: blobHash(r.AKPublic), params: attest.AttestationParameters{Public: r.AKPublic}}
	boot, err := v.verifyPlatform(ak, r.Nonce, r.Platform)
	if err != nil {
		return nil, nil, err
	}
	csr, err := verifyCSR(r.CSR, key)
	if err != nil {
		return nil, nil, err
	}
	return boot, csr, nil
}
