package token_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"strings"
	"sync"
	"testing"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/sigil-dev/sigil/token"
)

// keys are one private key per JWS algorithm family, made once: RSA key
// generation is slow.
var keys = sync.OnceValue(func() map[string]crypto.Signer {
	gen := func(f func() (crypto.Signer, error)) crypto.Signer {
		k, err := f()
		if err != nil {
			panic(err)
		}
		return k
	}
	ec := func(c elliptic.Curve) crypto.Signer {
		return gen(func() (crypto.Signer, error) { return ecdsa.GenerateKey(c, rand.Reader) })
	}
	rsa2048 := gen(func() (crypto.Signer, error) { return rsa.GenerateKey(rand.Reader, 2048) })
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	return map[string]crypto.Signer{
		"ES256": ec(elliptic.P256()), "ES384": ec(elliptic.P384()), "ES512": ec(elliptic.P521()),
		"PS256": rsa2048, "PS384": rsa2048, "PS512": rsa2048, "RS256": rsa2048, "RS384": rsa2048, "RS512": rsa2048,
		"EdDSA": ed,
	}
})

// signJOSE signs payload with go-jose, the library sigil's tokens were
// verified with before: what it signs, VerifySignature must accept.
func signJOSE(t testing.TB, alg string, key crypto.Signer, payload string) (input string, sig []byte) {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(alg), Key: key}, nil)
	if err != nil {
		t.Fatal(err)
	}
	jws, err := s.Sign([]byte(payload))
	if err != nil {
		t.Fatal(err)
	}
	compact, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	i := strings.LastIndexByte(compact, '.')
	sig, err = base64.RawURLEncoding.DecodeString(compact[i+1:])
	if err != nil {
		t.Fatal(err)
	}
	return compact[:i], sig
}

func TestVerifySignatureAcceptsEveryAlgorithm(t *testing.T) {
	for alg, key := range keys() {
		t.Run(alg, func(t *testing.T) {
			input, sig := signJOSE(t, alg, key, `{"iss":"x"}`)
			if err := token.VerifySignature(alg, key.Public(), input, sig); err != nil {
				t.Fatalf("VerifySignature: %v", err)
			}
		})
	}
}

func TestVerifySignatureAttacks(t *testing.T) {
	es256, ps256, ed := keys()["ES256"], keys()["PS256"], keys()["EdDSA"]
	input, sig := signJOSE(t, "ES256", es256, `{"iss":"x"}`)
	psInput, psSig := signJOSE(t, "PS256", ps256, `{"iss":"x"}`)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	flipped := append([]byte(nil), sig...)
	flipped[5] ^= 1
	r, s := sig[:32], sig[32:]
	swapped := append(append([]byte(nil), s...), r...)
	padded := append([]byte{0}, sig...)
	psSalt := pssWithSalt(t, ps256.(*rsa.PrivateKey), psInput, 20)
	for _, tc := range []struct {
		name, alg, input string
		key              crypto.PublicKey
		sig              []byte
		want             error
	}{
		{"altered-input", "ES256", input + "x", es256.Public(), sig, token.ErrSignature},
		{"altered-signature", "ES256", input, es256.Public(), flipped, token.ErrSignature},
		{"r-and-s-swapped", "ES256", input, es256.Public(), swapped, token.ErrSignature},
		{"signature-too-long", "ES256", input, es256.Public(), padded, token.ErrSignature},
		{"signature-empty", "ES256", input, es256.Public(), nil, token.ErrSignature},
		{"zero-signature", "ES256", input, es256.Public(), make([]byte, 64), token.ErrSignature},
		{"other-key", "ES256", input, other.Public(), sig, token.ErrSignature},
		{"curve-not-of-alg", "ES384", input, es256.Public(), sig, nil},
		{"ec-key-for-rsa-alg", "PS256", input, es256.Public(), sig, nil},
		{"rsa-key-for-ec-alg", "ES256", psInput, ps256.Public(), psSig, nil},
		{"pss-as-pkcs1", "RS256", psInput, ps256.Public(), psSig, token.ErrSignature},
		{"pss-short-salt", "PS256", psInput, ps256.Public(), psSalt, token.ErrSignature},
		{"rsa-1024", "PS256", psInput, small.Public(), psSig, nil},
		{"alg-none", "none", input, es256.Public(), nil, nil},
		{"alg-hmac", "HS256", input, []byte("secret"), sig, nil},
		{"alg-lower-case", "es256", input, es256.Public(), sig, nil},
		{"ed25519-for-ec-alg", "ES256", input, ed.Public(), sig, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := token.VerifySignature(tc.alg, tc.key, tc.input, tc.sig)
			switch {
			case err == nil:
				t.Fatal("verified")
			case tc.want != nil && !errors.Is(err, tc.want):
				t.Fatalf("error %v, want %v", err, tc.want)
			case tc.want == nil && errors.Is(err, token.ErrSignature):
				t.Fatalf("error %v, want the key-does-not-fit error", err)
			}
		})
	}
}

// pssWithSalt signs input with PS256 and a salt of n bytes, not the hash's
// 32 that RFC 7518 §3.5 asks for.
func pssWithSalt(t *testing.T, k *rsa.PrivateKey, input string, n int) []byte {
	t.Helper()
	d := crypto.SHA256.New()
	d.Write([]byte(input))
	sig, err := rsa.SignPSS(rand.Reader, k, crypto.SHA256, d.Sum(nil), &rsa.PSSOptions{SaltLength: n})
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

// FuzzVerifySignature feeds VerifySignature signatures and inputs the
// token's sender chose: it must not panic, and nothing but the signature
// made over the input verifies.
func FuzzVerifySignature(f *testing.F) {
	key := keys()["ES256"]
	input, sig := signJOSE(f, "ES256", key, `{"iss":"x"}`)
	f.Add("ES256", input, sig)
	f.Add("ES256", input, append(sig, 0))
	f.Add("ES384", input, sig)
	f.Add("EdDSA", input, sig)
	f.Fuzz(func(t *testing.T, alg, in string, s []byte) {
		err := token.VerifySignature(alg, key.Public(), in, s)
		if err == nil && (alg != "ES256" || in != input) {
			t.Fatalf("verified alg %q input %q", alg, in)
		}
	})
}

// BenchmarkVerifySignature compares VerifySignature with go-jose parsing
// and verifying the same ES256 token, in the same run.
func BenchmarkVerifySignature(b *testing.B) {
	key := keys()["ES256"]
	input, sig := signJOSE(b, "ES256", key, `{"iss":"https://idp.example","sub":"alice","aud":"x","exp":2000000000}`)
	compact := input + "." + base64.RawURLEncoding.EncodeToString(sig)
	b.Run("stdlib", func(b *testing.B) {
		for b.Loop() {
			s, err := base64.RawURLEncoding.DecodeString(compact[len(input)+1:])
			if err == nil {
				err = token.VerifySignature("ES256", key.Public(), input, s)
			}
			if err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("go-jose", func(b *testing.B) {
		for b.Loop() {
			jws, err := jose.ParseSignedCompact(compact, []jose.SignatureAlgorithm{jose.ES256})
			if err == nil {
				_, err = jws.Verify(key.Public())
			}
			if err != nil {
				b.Fatal(err)
			}
		}
	})
}
