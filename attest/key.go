package attest

import (
	"crypto"
	"crypto/subtle"
	"crypto/x509"

	"github.com/google/go-attestation/attest"
	"github.com/google/go-tpm/legacy/tpm2"
	"go.step.sm/crypto/keyutil"
)

// maxCSR bounds a certificate request.
const maxCSR = 8 << 10

// verifyKey checks that key was certified by ak over nonce and is a
// non-restricted signing key that cannot leave the TPM, and that csrDER is
// signed by that key and asks for that key. It returns the key and the CSR.
func verifyKey(ak *AK, nonce []byte, key CertifiedKey, csrDER []byte) (crypto.PublicKey, *x509.CertificateRequest, error) {
	for _, b := range [][]byte{key.Public, key.CreateAttestation, key.CreateSignature} {
		if len(b) == 0 || len(b) > maxTPMBlob {
			return nil, nil, fail(StepKey, "key parameter missing or larger than %d bytes", maxTPMBlob)
		}
	}
	akPub, err := attest.ParseAKPublic(ak.params.Public)
	if err != nil {
		return nil, nil, fail(StepKey, "AK public: %v", err)
	}
	cp := attest.CertificationParameters{
		Public: key.Public, CreateData: key.CreateData,
		CreateAttestation: key.CreateAttestation, CreateSignature: key.CreateSignature,
	}
	if err := cp.Verify(attest.VerifyOpts{Public: akPub.Public, Hash: akPub.Hash}); err != nil {
		return nil, nil, fail(StepKey, "certification by the AK: %v", err)
	}
	// Verify does not look at extraData: the nonce binds the key to this
	// enrollment.
	att, err := tpm2.DecodeAttestationData(key.CreateAttestation)
	if err != nil {
		return nil, nil, fail(StepKey, "decode certification: %v", err)
	}
	if subtle.ConstantTimeCompare(att.ExtraData, nonce) != 1 {
		return nil, nil, fail(StepKey, "certification is not over the challenge nonce")
	}
	pub, err := keyPublic(key.Public)
	if err != nil {
		return nil, nil, err
	}
	csr, err := verifyCSR(csrDER, pub)
	if err != nil {
		return nil, nil, err
	}
	return pub, csr, nil
}

func keyPublic(public []byte) (crypto.PublicKey, error) {
	tp, err := tpm2.DecodePublic(public)
	if err != nil {
		return nil, fail(StepKey, "decode key public area: %v", err)
	}
	if err := signOnly(tp, false); err != nil {
		return nil, fail(StepKey, "%v", err)
	}
	pub, err := tp.Key()
	if err != nil {
		return nil, fail(StepKey, "key public: %v", err)
	}
	return pub, nil
}

func verifyCSR(der []byte, key crypto.PublicKey) (*x509.CertificateRequest, error) {
	if len(der) == 0 || len(der) > maxCSR {
		return nil, fail(StepCSR, "CSR missing or larger than %d bytes", maxCSR)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, fail(StepCSR, "parse: %v", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fail(StepCSR, "signature: %v", err)
	}
	if !keyutil.Equal(key, csr.PublicKey) {
		return nil, fail(StepCSR, "CSR key is not the certified TPM key")
	}
	return csr, nil
}
