package hsm_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ThalesGroup/crypto11"
	"github.com/sigil-dev/sigil/hsm"
	"github.com/sigil-dev/sigil/testenv"
)

func TestRotateListFind(t *testing.T) {
	t.Parallel()
	tok := testenv.SoftHSM(t)
	h := open(t, tok.URI)
	ctx := t.Context()
	v1 := generate(t, h, "jwt", hsm.ES256)
	if _, err := h.Generate(ctx, "jwt", hsm.ES384); !errors.Is(err, hsm.ErrKeyExists) {
		t.Fatalf("Generate over an existing name: %v, want ErrKeyExists", err)
	}
	v2 := rotate(t, h, "jwt")
	v3 := rotate(t, h, "jwt")
	audit := generate(t, h, "audit", hsm.ES384)
	addForeignKey(t, tok)

	want := []string{"audit.v1 ES384", "jwt.v1 ES256", "jwt.v2 ES256", "jwt.v3 ES256"}
	if got := listed(t, h); !slices.Equal(got, want) {
		t.Fatalf("List = %q, want %q", got, want)
	}
	for _, tc := range []struct {
		ref  string
		want *hsm.Key
	}{{"jwt", v3}, {"jwt.v1", v1}, {"jwt.v2", v2}, {"audit", audit}} {
		k, err := h.Find(ctx, tc.ref)
		if err != nil || k.KID() != tc.want.KID() || k.Label() != tc.want.Label() {
			t.Fatalf("Find(%q) = %v, %v; want %s", tc.ref, k, err, tc.want.Label())
		}
		if err := signVerify(t, k, k.Alg(), tc.ref); err != nil {
			t.Fatalf("Find(%q): sign: %v", tc.ref, err)
		}
	}
	if err := signVerify(t, v1, hsm.ES256, "old versions keep signing"); err != nil {
		t.Fatal(err)
	}
}

func rotate(t *testing.T, h *hsm.HSM, name string) *hsm.Key {
	t.Helper()
	k, err := h.Rotate(t.Context(), name)
	if err != nil {
		t.Fatalf("Rotate(%s): %v", name, err)
	}
	return k
}

// listed renders List as "label alg", checking ids and kids on the way.
func listed(t *testing.T, h *hsm.HSM) []string {
	t.Helper()
	infos, err := h.List(t.Context())
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	var out []string
	ids := map[string]bool{}
	for _, i := range infos {
		if len(i.ID) != 16 || ids[string(i.ID)] || len(i.KID) != 43 || i.Label != fmt.Sprintf("%s.v%d", i.Name, i.Version) {
			t.Fatalf("List entry %+v: want a unique 16-byte id, a 43-character kid, label = name.vN", i)
		}
		ids[string(i.ID)] = true
		out = append(out, fmt.Sprintf("%s %s", i.Label, i.Alg))
	}
	return out
}

// addForeignKey puts a key outside the naming scheme on the token, with
// crypto11 directly: List and Find must leave it alone.
func addForeignKey(t *testing.T, tok *testenv.HSMToken) {
	t.Helper()
	c, err := crypto11.Configure(&crypto11.Config{Path: tok.Module, TokenLabel: tok.Label, Pin: tok.PIN,
		MaxSessions: 2, PoolWaitTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.GenerateECDSAKeyPairWithLabel([]byte{1}, []byte("Legacy Key"), elliptic.P256()); err != nil {
		t.Fatal(err)
	}
}

func TestKeyNotFound(t *testing.T) {
	t.Parallel()
	h := open(t, testenv.SoftHSM(t).URI)
	generate(t, h, "present", hsm.ES256)
	ctx := t.Context()
	for name, err := range map[string]error{
		"find-missing-name":    second(h.Find(ctx, "absent")),
		"find-missing-version": second(h.Find(ctx, "present.v2")),
		"rotate-missing":       second(h.Rotate(ctx, "absent")),
	} {
		if !errors.Is(err, hsm.ErrKeyNotFound) {
			t.Errorf("%s: %v, want ErrKeyNotFound", name, err)
		}
	}
}

func second[T any](_ T, err error) error { return err }

func TestGenerateRefusesBadNamesAndAlgorithms(t *testing.T) {
	t.Parallel()
	h := open(t, testenv.SoftHSM(t).URI)
	for _, tc := range []struct {
		name, key string
		alg       hsm.Alg
		err       string
	}{
		{"empty-name", "", hsm.ES256, "key name must be 1 to 48 characters"},
		{"too-long", strings.Repeat("a", 49), hsm.ES256, "key name must be 1 to 48 characters"},
		{"upper-case", "JWT", hsm.ES256, `key name "JWT": use a-z, 0-9`},
		{"dot", "jwt.v1", hsm.ES256, `key name "jwt.v1": use a-z, 0-9`},
		{"leading-dash", "-jwt", hsm.ES256, `key name "-jwt": use a-z, 0-9`},
		{"rs256", "jwt", "RS256", `unsupported algorithm "RS256"`},
		{"none", "jwt", "none", `unsupported algorithm "none"`},
	} {
		_, err := h.Generate(t.Context(), tc.key, tc.alg)
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: Generate error = %v, want %q", tc.name, err, tc.err)
		}
	}
	if infos, err := h.List(t.Context()); err != nil || len(infos) != 0 {
		t.Fatalf("List after refused Generates = %v, %v; want none", infos, err)
	}
}

func TestKIDIsStableRFC7638Thumbprint(t *testing.T) {
	t.Parallel()
	tok := testenv.SoftHSM(t)
	first, err := hsm.Open(t.Context(), tok.URI)
	if err != nil {
		t.Fatal(err)
	}
	k := generate(t, first, "stable", hsm.ES256)
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := open(t, tok.URI).Find(t.Context(), "stable")
	if err != nil {
		t.Fatal(err)
	}
	want := ecThumbprint(t, k.Public().(*ecdsa.PublicKey))
	if k.KID() != want || again.KID() != want || !bytes.Equal(k.Info().ID, again.Info().ID) {
		t.Fatalf("kid at generation %s, after re-open %s, RFC 7638 %s", k.KID(), again.KID(), want)
	}
}

// ecThumbprint computes RFC 7638 §3 for a P-256 key by hand: the required
// members in lexicographic order, no whitespace, SHA-256, base64url.
func ecThumbprint(t *testing.T, pub *ecdsa.PublicKey) string {
	pt, err := pub.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	b64 := base64.RawURLEncoding.EncodeToString
	jwk := `{"crv":"P-256","kty":"EC","x":"` + b64(pt[1:33]) + `","y":"` + b64(pt[33:]) + `"}`
	sum := sha256.Sum256([]byte(jwk))
	return b64(sum[:])
}
