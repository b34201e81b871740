package tpm_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/google/go-attestation/attest"
	"github.com/google/go-tpm/legacy/tpm2"
	"github.com/sigil-dev/sigil/testenv"
	"github.com/sigil-dev/sigil/tpm"
)

func TestKeyCertification(t *testing.T) {
	t.Parallel()
	tt := open(t, sharedTPM(t))
	for _, alg := range []attest.Algorithm{attest.ECDSA, attest.RSA} {
		t.Run(string(alg), func(t *testing.T) {
			ak := newAK(t, tt, tpm.AKAlgorithm(alg))
			n := nonce(t)
			key := newKey(t, ak, n)
			cp := key.CertificationParameters()
			akPub, err := attest.ParseAKPublic(ak.AttestationParameters().Public)
			if err != nil {
				t.Fatal(err)
			}
			if err := cp.Verify(attest.VerifyOpts{Public: akPub.Public, Hash: akPub.Hash}); err != nil {
				t.Fatalf("CertificationParameters.Verify: %v", err)
			}
			// Verify ignores extraData: the verifier compares it with its nonce.
			att, err := tpm2.DecodeAttestationData(cp.CreateAttestation)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(att.ExtraData, n) {
				t.Errorf("extraData %x, want nonce %x", att.ExtraData, n)
			}
			certified, err := tpm2.DecodePublic(cp.Public)
			if err != nil {
				t.Fatal(err)
			}
			if k, err := certified.Key(); err != nil || !k.(*ecdsa.PublicKey).Equal(key.Public()) {
				t.Errorf("certified key differs from the key: %v", err)
			}
			other := newAK(t, tt)
			otherPub, _ := attest.ParseAKPublic(other.AttestationParameters().Public)
			if err := cp.Verify(attest.VerifyOpts{Public: otherPub.Public, Hash: otherPub.Hash}); err == nil {
				t.Error("certification verifies with another AK")
			}
		})
	}
}

func TestKeyPersistence(t *testing.T) {
	t.Parallel()
	sw := sharedTPM(t)
	dir := t.TempDir()
	tt, err := tpm.Open(testCtx(t), sw.Addr)
	if err != nil {
		t.Fatal(err)
	}
	ak := newAK(t, tt)
	key, err := ak.NewKey(testCtx(t), nonce(t))
	if err != nil {
		t.Fatal(err)
	}
	pub := key.Public().(*ecdsa.PublicKey)
	if err := tpm.Save(dir, ak, key); err != nil {
		t.Fatalf("Save: %v", err)
	}
	for _, f := range []string{tpm.AKFile, tpm.KeyFile, tpm.KeyPEMFile} {
		if fi, err := os.Stat(filepath.Join(dir, f)); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, mode %v; want 0600", f, err, fi.Mode())
		}
	}
	if err := tt.Close(); err != nil { // the workload restarts
		t.Fatal(err)
	}
	if _, err := key.Sign(nil, make([]byte, 32), crypto.SHA256); err == nil {
		t.Error("signed with a key of a closed TPM")
	}

	tt = open(t, sw)
	ak2, key2, err := tt.Load(testCtx(t), dir)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	defer key2.Close()
	if !bytes.Equal(ak2.AttestationParameters().Public, ak.AttestationParameters().Public) {
		t.Error("reloaded AK differs")
	}
	if !pub.Equal(key2.Public()) {
		t.Fatal("reloaded key has another public key")
	}
	checkSigns(t, key2, pub)
	if _, err := ak2.NewKey(testCtx(t), nonce(t)); err != nil {
		t.Errorf("reloaded AK cannot certify: %v", err)
	}

	// Blobs of one TPM do not load in another.
	stranger := open(t, testenv.SWTPM(t)) // not SharedIdentity: that has the same SRK
	if _, _, err := stranger.Load(testCtx(t), dir); err == nil {
		t.Error("another TPM loaded the blobs")
	}
}

// checkSigns signs a digest with key and verifies it with pub.
func checkSigns(t *testing.T, key crypto.Signer, pub *ecdsa.PublicKey) {
	t.Helper()
	digest := sha256.Sum256([]byte("sigil"))
	sig, err := key.Sign(nil, digest[:], crypto.SHA256)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	if !ecdsa.VerifyASN1(pub, digest[:], sig) {
		t.Fatal("signature does not verify")
	}
}

func TestKeySignConcurrently(t *testing.T) {
	t.Parallel()
	tt := open(t, sharedTPM(t))
	ak := newAK(t, tt)
	key := newKey(t, ak, nonce(t))
	pub := key.Public().(*ecdsa.PublicKey)
	var wg sync.WaitGroup
	errs := make(chan error, 8*5)
	for g := range 8 {
		wg.Go(func() {
			for i := range 5 {
				digest := sha256.Sum256(fmt.Appendf(nil, "%d/%d", g, i))
				sig, err := key.Sign(nil, digest[:], crypto.SHA256)
				if err == nil && !ecdsa.VerifyASN1(pub, digest[:], sig) {
					err = fmt.Errorf("signature %d/%d does not verify", g, i)
				}
				if err != nil {
					errs <- err
				}
			}
		})
	}
	// Other operations interleave with the signing.
	if _, err := tt.EKs(testCtx(t)); err != nil {
		t.Errorf("EKs: %v", err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestKeySignRejects(t *testing.T) {
	t.Parallel()
	tt := open(t, sharedTPM(t))
	key := newKey(t, newAK(t, tt), nonce(t))
	tests := []struct {
		name   string
		digest []byte
		opts   crypto.SignerOpts
	}{
		{"no hash", make([]byte, 32), crypto.Hash(0)},
		{"digest length does not fit hash", make([]byte, 20), crypto.SHA256},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := key.Sign(nil, tc.digest, tc.opts); err == nil {
				t.Error("signed")
			}
		})
	}
	if err := key.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := key.Sign(nil, make([]byte, 32), crypto.SHA256); err == nil {
		t.Error("signed with a closed key")
	}
}
