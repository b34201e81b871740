package signer

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/asn1"
	"math/big"
	"testing"
)

// TestRawECDSA: a DER signature becomes R||S of the curve's size, and one
// that is not a well-formed pair of positive integers that fit is refused,
// never padded or cut into a token.
func TestRawECDSA(t *testing.T) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	d := sha256.Sum256([]byte("payload"))
	var der []byte
	// 64 signatures: R or S of 33 DER bytes (a leading zero for the sign)
	// occurs in almost every run.
	for range 64 {
		if der, err = ecdsa.SignASN1(rand.Reader, k, d[:]); err != nil {
			t.Fatal(err)
		}
		raw, err := rawECDSA(der, 32)
		if err != nil || len(raw) != 64 {
			t.Fatalf("rawECDSA(%x) = %x, %v", der, raw, err)
		}
		if !ecdsa.Verify(&k.PublicKey, d[:], new(big.Int).SetBytes(raw[:32]), new(big.Int).SetBytes(raw[32:])) {
			t.Fatalf("R||S of %x does not verify", der)
		}
	}
	pair := func(r, s *big.Int) []byte {
		b, err := asn1.Marshal(struct{ R, S *big.Int }{r, s})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	big33 := new(big.Int).Lsh(big.NewInt(1), 8*32)
	for _, tc := range []struct {
		name string
		der  []byte
	}{
		{"not-der", []byte("not a signature")},
		{"trailing-data", append(der[:len(der):len(der)], 0)},
		{"zero-r", pair(big.NewInt(0), big.NewInt(1))},
		{"negative-s", pair(big.NewInt(1), big.NewInt(-1))},
		{"r-too-long", pair(big33, big.NewInt(1))},
		{"r-not-minimal", []byte{0x30, 0x07, 0x02, 0x02, 0x00, 0x01, 0x02, 0x01, 0x01}},
		{"s-missing", []byte{0x30, 0x03, 0x02, 0x01, 0x01}},
		{"third-integer", []byte{0x30, 0x09, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01}},
		{"long-form-length", append([]byte{0x30, 0x81, byte(len(der) - 2)}, der[2:]...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if raw, err := rawECDSA(tc.der, 32); err == nil {
				t.Fatalf("rawECDSA accepted it: %x", raw)
			}
		})
	}
}

// isBase64URL accepts exactly the base64url alphabet, and dots only when
// asked, for every byte value, alone and inside a token.
func TestIsBase64URLEveryByte(t *testing.T) {
	for b := range 256 {
		c := byte(b)
		alphabet := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_'
		for _, dots := range []bool{false, true} {
			want := alphabet || dots && c == '.'
			for _, s := range []string{string([]byte{c}), "eyJh" + string([]byte{c}) + "bGc"} {
				if got := isBase64URL(s, dots); got != want {
					t.Errorf("isBase64URL(%q, %v) = %v, want %v", s, dots, got, want)
				}
			}
		}
	}
	if !isBase64URL("", false) || !isBase64URL("a.b.c", true) || isBase64URL("a.b.c", false) {
		t.Error("isBase64URL: wrong answer for the empty string or a compact JWS")
	}
}

// sameKey: the same object, an equal copy and equal ed25519 keys (slices,
// which == on interfaces would panic on) are the same key; another key,
// another type or no key is not.
func TestSameKey(t *testing.T) {
	k1, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	copy1 := k1.PublicKey
	edPub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	edCopy := append(ed25519.PublicKey(nil), edPub...)
	for _, tc := range []struct {
		name string
		a, b crypto.PublicKey
		want bool
	}{
		{"same-object", &k1.PublicKey, &k1.PublicKey, true},
		{"equal-copy", &k1.PublicKey, &copy1, true},
		{"other-key", &k1.PublicKey, &k2.PublicKey, false},
		{"ed25519-equal", edPub, edCopy, true},
		{"ed25519-vs-ecdsa", edPub, &k1.PublicKey, false},
		{"ecdsa-vs-ed25519", &k1.PublicKey, edPub, false},
		{"untyped-nil", nil, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := sameKey(tc.a, tc.b); got != tc.want {
				t.Fatalf("sameKey = %v, want %v", got, tc.want)
			}
		})
	}
}
