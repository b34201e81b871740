package audit_test

import (
	"crypto/x509"
	"encoding/pem"
	"testing"

	"github.com/sigil-dev/sigil/audit"
	"github.com/sigil-dev/sigil/hsm"
	"github.com/sigil-dev/sigil/testenv"
)

// hsmKey generates a key in a fresh SoftHSM token.
func hsmKey(t testing.TB, alg hsm.Alg) *hsm.Key {
	t.Helper()
	tok := testenv.SoftHSM(t)
	h, err := hsm.Open(t.Context(), tok.URI, hsm.WithLogger(testLogger(t)))
	if err != nil {
		t.Fatalf("hsm.Open: %v", err)
	}
	t.Cleanup(func() { _ = h.Close() })
	k, err := h.Generate(t.Context(), "audit", alg)
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	return k
}

// TestHSMSignedLog runs the log with its key in SoftHSM, and verifies it
// with the public key as an auditor gets it: PEM, out of band.
func TestHSMSignedLog(t *testing.T) {
	k := hsmKey(t, hsm.ES256)
	w := &world{logEnv: &logEnv{st: newMemStorage()}, state: statePath(t)}
	w.signer = newSigner(t, origin, k)
	w.log = w.newLog(t)
	w.grow(t, 10)
	w.grow(t, 5)
	der, err := x509.MarshalPKIXPublicKey(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	v, err := audit.ParseVerifierPEM(origin, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	if err != nil {
		t.Fatal(err)
	}
	rep, err := audit.Verify(t.Context(), w.st, v, audit.VerifyOptions{StatePath: w.state})
	if err != nil || rep.Size != 15 {
		t.Fatalf("Verify = %v\n%s", err, rep)
	}
}

func TestHSMKeyOfAnotherCurve(t *testing.T) {
	if _, err := audit.NewSigner(origin, hsmKey(t, hsm.ES384)); err == nil {
		t.Fatal("NewSigner accepted a P-384 key")
	}
}
