package verify

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sigil-dev/sigil/token"
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
	thumb := token.Thumbprint(e.certA.Raw)
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := v.Verify(t.Context(), tok, e.certA)
		if err != nil {
			if !errors.Is(err, ErrInvalidToken) || c != nil {
				t.Fatalf("Verify error %v, claims %v", err, c)
			}
			return
		}
		if c.Issuer != issuer || !c.HasAudience(testAudience) || c.Confirmation != thumb || c.ID == "" {
			t.Fatalf("accepted %+v", c)
		}
	})
}

// FuzzReadEvents feeds the revocation feed's stream reader arbitrary
// bytes: it must not panic, hand out only events with data no longer than
// maxEventBytes, and end every stream with an error.
func FuzzReadEvents(f *testing.F) {
	f.Add("retry: 1000\n\nid: 1\ndata: a.b.c\n\n: keep-alive\n\n")
	f.Add("id: 7\ndata: x\ndata: y\n\nid:\n\ndata\n\n")
	f.Add("data: " + strings.Repeat("z", 100) + "\r\n\r\n")
	f.Fuzz(func(t *testing.T, stream string) {
		err := readEvents(strings.NewReader(stream), func() {}, func(id, data string) error {
			if data == "" || len(data) > maxEventBytes {
				t.Fatalf("event with %d bytes of data", len(data))
			}
			return nil
		})
		if err == nil {
			t.Fatal("a stream ended without an error")
		}
	})
}

func TestReadEventsBoundsData(t *testing.T) {
	line := "data: " + strings.Repeat("a", 1000) + "\n"
	stream := strings.Repeat(line, maxEventBytes/1000+2)
	err := readEvents(strings.NewReader(stream), func() {}, func(string, string) error {
		t.Fatal("an oversized event was applied")
		return nil
	})
	if err == nil || errors.Is(err, errFeedEnded) {
		t.Fatalf("err = %v, want the size limit", err)
	}
}
