package token

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	jose "github.com/go-jose/go-jose/v4"
)

// PublicKey is a verification key: its kid, the algorithm it is pinned
// to ("" if its JWK named none) and the key.
type PublicKey struct {
	KID string
	Alg string // a JWS algorithm: ES256, ES384, PS256, ...
	Key crypto.PublicKey
}

// Suits reports whether k may verify a signature made with alg: k's own
// algorithm, if it names one, is alg, and the key is of the kind alg
// needs (see Fits).
func (k PublicKey) Suits(alg string) bool {
	return (k.Alg == "" || k.Alg == alg) && Fits(alg, k.Key)
}

// Fits reports whether pub is a key of the kind the JWS algorithm alg
// needs: ES256 a P-256 key, ES384 P-384, ES512 P-521, PS* and RS* an RSA
// key of at least 2048 bits, EdDSA an Ed25519 key.
func Fits(alg string, pub crypto.PublicKey) bool {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		return alg == "ES256" && k.Curve == elliptic.P256() || alg == "ES384" && k.Curve == elliptic.P384() ||
			alg == "ES512" && k.Curve == elliptic.P521()
	case *rsa.PublicKey:
		return (strings.HasPrefix(alg, "PS") || strings.HasPrefix(alg, "RS")) && k.N.BitLen() >= 2048
	case ed25519.PublicKey:
		return alg == "EdDSA"
	}
	return false
}

// ParseJWKS reads an RFC 7517 JWK Set and returns its public signing keys
// by kid, each usable with an algorithm of algs (the caller's allow-list):
// a key whose alg is set must name one of algs and suit it; a key without
// alg must suit one of them, and verifying then checks the token's alg
// against it (Suits).
//
// Keys that do not parse, have no kid, are for another use than "sig",
// repeat a kid (the first one counts) or fit no allowed algorithm are
// skipped. Private or symmetric key material anywhere makes the whole set
// an error: a JWKS that holds a secret is a misconfiguration, not a
// source of keys. A set with no usable key is an error too.
func ParseJWKS(b []byte, algs []string) (map[string]PublicKey, error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(b, &set); err != nil {
		return nil, fmt.Errorf("JWKS is not a JWK Set: %w", err)
	}
	keys := map[string]PublicKey{}
	for _, raw := range set.Keys {
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON(raw); err != nil {
			continue
		}
		if !k.IsPublic() {
			return nil, errors.New("JWKS holds private or symmetric key material")
		}
		if _, dup := keys[k.KeyID]; dup || k.KeyID == "" || (k.Use != "" && k.Use != "sig") || !k.Valid() {
			continue
		}
		p := PublicKey{KID: k.KeyID, Alg: k.Algorithm, Key: k.Key}
		if slices.ContainsFunc(algs, p.Suits) {
			keys[k.KeyID] = p
		}
	}
	if len(keys) == 0 {
		return nil, errors.New("JWKS has no usable signing key")
	}
	return keys, nil
}
