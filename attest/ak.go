package attest

import (
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"

	"github.com/google/go-attestation/attest"
	"github.com/google/go-tpm/legacy/tpm2"
)

// maxTPMBlob bounds each TPM structure a client sends (publics, creation
// data, attestations, signatures).
const maxTPMBlob = 4 << 10

// NonceSize is the size of a challenge nonce.
const NonceSize = 32

// AK is a verified attestation key.
type AK struct {
	Public crypto.PublicKey
	// Hash is the hex SHA-256 of the AK's TPMT_PUBLIC.
	Hash   string
	params attest.AttestationParameters
}

// VerifyAK checks that ak describes a TPM-generated, restricted, sign-only
// key that cannot leave its TPM, of an acceptable size.
func (v *Verifier) VerifyAK(ek *EK, ak AKParameters) (*AK, error) {
	for _, b := range [][]byte{ak.Public, ak.CreateData, ak.CreateAttestation, ak.CreateSignature} {
		if len(b) == 0 || len(b) > maxTPMBlob {
			return nil, fail(StepAK, "AK parameter missing or larger than %d bytes", maxTPMBlob)
		}
	}
	params := attest.AttestationParameters{
		Public: ak.Public, CreateData: ak.CreateData,
		CreateAttestation: ak.CreateAttestation, CreateSignature: ak.CreateSignature,
	}
	ap := attest.ActivationParameters{EK: ek.Public, AK: params}
	if err := ap.CheckAKParameters(); err != nil {
		return nil, fail(StepAK, "%v", err)
	}
	pub, err := tpm2.DecodePublic(ak.Public)
	if err != nil {
		return nil, fail(StepAK, "decode AK public area: %v", err)
	}
	if err := signOnly(pub, true); err != nil {
		return nil, fail(StepAK, "%v", err)
	}
	key, err := pub.Key()
	if err != nil {
		return nil, fail(StepAK, "AK public key: %v", err)
	}
	return &AK{Public: key, Hash: blobHash(ak.Public), params: params}, nil
}

// Challenge is a credential for a TPM to activate, with what the server keeps
// to check the answer.
type Challenge struct {
	Credential attest.EncryptedCredential
	// Secret is what the TPM must return; keep only its hash.
	Secret []byte
	Nonce  []byte
}

// NewChallenge encrypts a fresh secret to ek that only the TPM holding both
// ek and ak can recover, and draws the nonce for quotes and key
// certification.
func NewChallenge(ek *EK, ak *AK) (*Challenge, error) {
	ap := attest.ActivationParameters{EK: ek.Public, AK: ak.params}
	secret, cred, err := ap.Generate()
	if err != nil {
		return nil, fail(StepActivation, "generate credential: %v", err)
	}
	nonce := make([]byte, NonceSize)
	if _, err := rand.Read(nonce); err != nil {
		return nil, fail(StepActivation, "draw nonce: %v", err)
	}
	return &Challenge{Credential: *cred, Secret: secret, Nonce: nonce}, nil
}

func blobHash(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
