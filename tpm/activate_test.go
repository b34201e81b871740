package tpm_test

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/subtle"
	"encoding/binary"
	"testing"

	"github.com/google/go-attestation/attest"
	"github.com/google/go-tpm/legacy/tpm2"
	tpm2direct "github.com/google/go-tpm/tpm2"
	"github.com/sigil-dev/sigil/testenv"
	"github.com/sigil-dev/sigil/tpm"
)

func TestActivateCredential(t *testing.T) {
	t.Parallel()
	tt := open(t, sharedTPM(t))
	other := open(t, testenv.SWTPM(t)) // its own EKs
	tests := []struct {
		name string
		ak   attest.Algorithm
		ek   func(testing.TB, *tpm.TPM) tpm.EK
		// challenge encrypts a secret to ek for ak, as a verifier would.
		challenge func(testing.TB, tpm.EK, *tpm.AK) ([]byte, attest.EncryptedCredential)
	}{
		{"ecdsa ak, rsa ek, go-attestation", attest.ECDSA, ekOf[*rsa.PublicKey], attestChallenge},
		{"rsa ak, rsa ek, go-attestation", attest.RSA, ekOf[*rsa.PublicKey], attestChallenge},
		{"ecdsa ak, ecc p-384 ek, go-tpm", attest.ECDSA, ekOf[*ecdsa.PublicKey], tpmChallenge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ak := newAK(t, tt, tpm.AKAlgorithm(tc.ak))
			ek := tc.ek(t, tt)
			secret, cred := tc.challenge(t, ek, ak)
			got, err := ak.ActivateCredential(testCtx(t), ek, cred)
			if err != nil {
				t.Fatalf("ActivateCredential: %v", err)
			}
			if subtle.ConstantTimeCompare(got, secret) != 1 {
				t.Fatalf("activated secret %x, want %x", got, secret)
			}

			// The same challenge for another TPM's EK: this TPM cannot answer it.
			otherEK := tc.ek(t, other)
			_, cred = tc.challenge(t, otherEK, ak)
			if got, err := ak.ActivateCredential(testCtx(t), ek, cred); err == nil {
				t.Fatalf("credential for another TPM's EK activated: %x", got)
			}
			if _, err := ak.ActivateCredential(testCtx(t), otherEK, cred); err == nil {
				t.Fatal("activation with another TPM's EK succeeded")
			}

			// The TPM is still usable after failed activations.
			secret, cred = tc.challenge(t, ek, ak)
			if got, err := ak.ActivateCredential(testCtx(t), ek, cred); err != nil || subtle.ConstantTimeCompare(got, secret) != 1 {
				t.Fatalf("activation after failures: %x, %v", got, err)
			}
		})
	}
}

func TestActivateCredentialRejectsMalformed(t *testing.T) {
	t.Parallel()
	tt := open(t, sharedTPM(t))
	ak := newAK(t, tt)
	ek := ekOf[*rsa.PublicKey](t, tt)
	_, good := attestChallenge(t, ek, ak)
	tests := []struct {
		name string
		cred attest.EncryptedCredential
	}{
		{"empty", attest.EncryptedCredential{}},
		{"credential size prefix wrong", attest.EncryptedCredential{Credential: append([]byte{0xff, 0xff}, good.Credential[2:]...), Secret: good.Secret}},
		{"secret truncated", attest.EncryptedCredential{Credential: good.Credential, Secret: good.Secret[:len(good.Secret)-1]}},
		{"credential altered", attest.EncryptedCredential{Credential: flipLast(good.Credential), Secret: good.Secret}},
		{"secret altered", attest.EncryptedCredential{Credential: good.Credential, Secret: flipLast(good.Secret)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got, err := ak.ActivateCredential(testCtx(t), ek, tc.cred); err == nil {
				t.Fatalf("activated %x", got)
			}
		})
	}
}

func flipLast(b []byte) []byte {
	b = append([]byte(nil), b...)
	b[len(b)-1] ^= 1
	return b
}

// attestChallenge is go-attestation's verifier side.
func attestChallenge(t testing.TB, ek tpm.EK, ak *tpm.AK) ([]byte, attest.EncryptedCredential) {
	t.Helper()
	params := attest.ActivationParameters{EK: ek.Public, AK: ak.AttestationParameters()}
	secret, cred, err := params.Generate()
	if err != nil {
		t.Fatalf("ActivationParameters.Generate: %v", err)
	}
	return secret, *cred
}

// tpmChallenge encrypts a credential with go-tpm, which honours the EK's own
// name algorithm and symmetric scheme (swtpm's P-384 EK uses SHA-384 and
// AES-256, which go-attestation's Generate does not handle).
func tpmChallenge(t testing.TB, ek tpm.EK, ak *tpm.AK) ([]byte, attest.EncryptedCredential) {
	t.Helper()
	params := ak.AttestationParameters()
	if err := (&attest.ActivationParameters{EK: ek.Public, AK: params}).CheckAKParameters(); err != nil {
		t.Fatalf("CheckAKParameters: %v", err)
	}
	area, err := tpm2direct.Unmarshal[tpm2direct.TPMTPublic](ek.PublicArea)
	if err != nil {
		t.Fatal(err)
	}
	key, err := tpm2direct.ImportEncapsulationKey(area)
	if err != nil {
		t.Fatalf("ImportEncapsulationKey: %v", err)
	}
	att, err := tpm2.DecodeAttestationData(params.CreateAttestation)
	if err != nil {
		t.Fatal(err)
	}
	name, err := att.AttestedCreationInfo.Name.Digest.Encode()
	if err != nil {
		t.Fatal(err)
	}
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		t.Fatal(err)
	}
	id, enc, err := tpm2direct.CreateCredential(rand.Reader, key, name, secret)
	if err != nil {
		t.Fatalf("CreateCredential: %v", err)
	}
	return secret, attest.EncryptedCredential{Credential: with2B(id), Secret: with2B(enc)}
}

func with2B(b []byte) []byte {
	return append(binary.BigEndian.AppendUint16(nil, uint16(len(b))), b...)
}
