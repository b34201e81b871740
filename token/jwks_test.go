package token_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/sigil-dev/sigil/token"
)

func jwks(t testing.TB, keys ...jose.JSONWebKey) []byte {
	t.Helper()
	b, err := json.Marshal(jose.JSONWebKeySet{Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func ecKey(t testing.TB, c elliptic.Curve) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestParseJWKS(t *testing.T) {
	p256, p384 := ecKey(t, elliptic.P256()), ecKey(t, elliptic.P384())
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pub := func(k crypto.Signer, kid, alg, use string) jose.JSONWebKey {
		return jose.JSONWebKey{Key: k.Public(), KeyID: kid, Algorithm: alg, Use: use}
	}
	es256 := []string{"ES256"}
	tests := []struct {
		name string
		jwks []byte
		algs []string
		kids []string // kept, sorted; nil for an error
		err  string
	}{
		{"pinned keys", jwks(t, pub(p256, "a", "ES256", "sig"), pub(p384, "b", "ES384", "")), []string{"ES256", "ES384"}, []string{"a", "b"}, ""},
		{"key without alg that fits", jwks(t, pub(p256, "a", "", "")), es256, []string{"a"}, ""},
		{"alg outside the allow-list", jwks(t, pub(p256, "a", "ES256", ""), pub(p384, "b", "ES384", "")), es256, []string{"a"}, ""},
		{"key not suiting its alg", jwks(t, pub(p384, "a", "ES256", ""), pub(p256, "b", "ES256", "")), es256, []string{"b"}, ""},
		{"RSA key for PS256", jwks(t, pub(rsaKey, "r", "PS256", "sig")), []string{"PS256"}, []string{"r"}, ""},
		{"encryption key", jwks(t, pub(p256, "a", "ES256", "enc"), pub(p256, "b", "ES256", "sig")), es256, []string{"b"}, ""},
		{"no kid", jwks(t, pub(p256, "", "ES256", ""), pub(p256, "b", "ES256", "")), es256, []string{"b"}, ""},
		{"repeated kid keeps the first", jwks(t, pub(p256, "a", "ES256", ""), pub(p384, "a", "ES384", "")), []string{"ES256", "ES384"}, []string{"a"}, ""},
		{"unparseable key skipped", []byte(`{"keys":[{"kty":"EC","crv":"P-256","kid":"x","x":"","y":""},` + strings.TrimPrefix(string(jwks(t, pub(p256, "b", "ES256", ""))), `{"keys":[`)), es256, []string{"b"}, ""},
		{"private key", jwks(t, jose.JSONWebKey{Key: p256, KeyID: "a", Algorithm: "ES256"}), es256, nil, "private or symmetric"},
		{"symmetric key", []byte(`{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"h","alg":"HS256"}]}`), []string{"HS256"}, nil, "private or symmetric"},
		{"no usable key", jwks(t, pub(p384, "a", "ES384", "")), es256, nil, "no usable signing key"},
		{"empty set", []byte(`{"keys":[]}`), es256, nil, "no usable signing key"},
		{"not JSON", []byte(`keys`), es256, nil, "not a JWK Set"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keys, err := token.ParseJWKS(tt.jwks, tt.algs)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want one mentioning %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var kids []string
			for kid, k := range keys {
				if k.KID != kid {
					t.Errorf("key %q under kid %q", k.KID, kid)
				}
				kids = append(kids, kid)
			}
			slices.Sort(kids)
			if !slices.Equal(kids, tt.kids) {
				t.Fatalf("kids %v, want %v", kids, tt.kids)
			}
		})
	}
}

func TestSuits(t *testing.T) {
	p256 := ecKey(t, elliptic.P256())
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	edPub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		key  token.PublicKey
		alg  string
		want bool
	}{
		{"pinned", token.PublicKey{Alg: "ES256", Key: p256.Public()}, "ES256", true},
		{"pinned to another alg", token.PublicKey{Alg: "ES384", Key: p256.Public()}, "ES256", false},
		{"unpinned", token.PublicKey{Key: p256.Public()}, "ES256", true},
		{"wrong curve", token.PublicKey{Key: p256.Public()}, "ES384", false},
		{"EC key for HS256", token.PublicKey{Key: p256.Public()}, "HS256", false},
		{"EC key for none", token.PublicKey{Key: p256.Public()}, "none", false},
		{"RSA below 2048 bits", token.PublicKey{Key: small.Public()}, "PS256", false},
		{"Ed25519", token.PublicKey{Key: edPub}, "EdDSA", true},
	}
	for _, tt := range tests {
		if got := tt.key.Suits(tt.alg); got != tt.want {
			t.Errorf("%s: Suits(%s) = %v", tt.name, tt.alg, got)
		}
	}
}

// TestJWKSTestdata reads the seeds of FuzzParseJWKS, each named after what
// it holds.
func TestJWKSTestdata(t *testing.T) {
	for name, want := range map[string]string{
		"jwks-ec-rsa.json":               "ec",
		"jwks-symmetric.json":            "",
		"jwks-ec-private.json":           "",
		"jwks-ec-empty-coordinates.json": "",
	} {
		b, err := os.ReadFile("testdata/" + name)
		if err != nil {
			t.Fatal(err)
		}
		keys, err := token.ParseJWKS(b, []string{"ES256"})
		if want == "" {
			if err == nil {
				t.Errorf("%s: accepted", name)
			}
			continue
		}
		if _, ok := keys[want]; err != nil || len(keys) != 1 || !ok {
			t.Errorf("%s: %v, %v; want only %q", name, keys, err, want)
		}
	}
}
