package ca_test

import (
	"context"
	"crypto"
	"testing"

	"github.com/sigil-dev/sigil/hsm"
	"github.com/sigil-dev/sigil/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// signers returns the root and issuing CA keys for a test: P-384 and P-256
// keys in a fresh SoftHSM token, as sigild init makes them.
func signers(t *testing.T) (root, issuer crypto.Signer) {
	t.Helper()
	tok := testenv.SoftHSM(t)
	h, err := hsm.Open(context.Background(), tok.URI)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	r, err := h.Generate(context.Background(), "root", hsm.ES384)
	if err != nil {
		t.Fatal(err)
	}
	i, err := h.Generate(context.Background(), "issuer", hsm.ES256)
	if err != nil {
		t.Fatal(err)
	}
	return r, i
}
