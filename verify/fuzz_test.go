package verify

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sigil-dev/sigil/signer"
)

// FuzzVerify feeds Verify arbitrary tokens, seeded with a valid token,
// crafted attack tokens and testdata/*.jwt. Verify must not panic, must
// fail only with its documented errors, and may accept only a token that
// is bound to the peer certificate and from the configured issuer and
// audience.
func FuzzVerify(f *testing.F) {
	e := newEnv(f)
	v := e.verifier(f, e.config(f))
	f.Add(e.token(f, e.mint, e.certA))
	f.Add(e.token(f, e.mint2, e.certA))
	f.Add(signSET(f, e.key, issuer, "x", 1))
	h, c := e.header(), e.claims()
	f.Add(craft(f, h, c, e.key))
	h["jwk"] = map[string]string{"kty": "EC"}
	f.Add(craft(f, h, c, e.key))
	files, _ := filepath.Glob("testdata/*.jwt")
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(strings.TrimSpace(string(b)))
	}
	thumb := signer.Thumbprint(e.certA.Raw)
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := v.Verify(t.Context(), tok, e.certA)
		if err != nil {
			if !errors.Is(err, ErrInvalidToken) || c != nil {
				t.Fatalf("Verify error %v, claims %v", err, c)
			}
			return
		}
		if c.Issuer != issuer || !c.HasAudience(testAudience) || c.Confirmation != thumb || c.JTI == "" {
			t.Fatalf("accepted %+v", c)
		}
	})
}
