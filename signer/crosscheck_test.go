package signer_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sigil-dev/sigil/hsm"
	"github.com/sigil-dev/sigil/token"
)

// jwk is a public JWK as published, parsed by hand rather than by go-jose.
type jwk struct {
	Kty, Crv, X, Y, N, E, Kid, Alg, Use string
}

// parseJWKS decodes EC and RSA public keys by kid, by hand.
func parseJWKS(t testing.TB, b []byte) map[string]jwk {
	t.Helper()
	var set struct{ Keys []jwk }
	if err := json.Unmarshal(b, &set); err != nil {
		t.Fatalf("JWKS: %v", err)
	}
	out := map[string]jwk{}
	for _, k := range set.Keys {
		out[k.Kid] = k
	}
	return out
}

func bigInt(s string) (*big.Int, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	return new(big.Int).SetBytes(b), err
}

func (k jwk) public() (any, error) {
	switch k.Kty {
	case "EC":
		curve := map[string]elliptic.Curve{"P-256": elliptic.P256(), "P-384": elliptic.P384()}[k.Crv]
		x, err1 := bigInt(k.X)
		y, err2 := bigInt(k.Y)
		if curve == nil || err1 != nil || err2 != nil {
			return nil, fmt.Errorf("bad EC key %s", k.Kid)
		}
		return &ecdsa.PublicKey{Curve: curve, X: x, Y: y}, nil
	case "RSA":
		n, err1 := bigInt(k.N)
		e, err2 := bigInt(k.E)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("bad RSA key %s", k.Kid)
		}
		return &rsa.PublicKey{N: n, E: int(e.Int64())}, nil
	}
	return nil, fmt.Errorf("key type %q", k.Kty)
}

// TestCrossCheckGolangJWT: github.com/golang-jwt/jwt/v5 accepts our tokens
// against our JWKS with the method pinned, and refuses them with another
// method pinned.
func TestCrossCheckGolangJWT(t *testing.T) {
	for _, alg := range []hsm.Alg{hsm.ES256, hsm.ES384, hsm.PS256} {
		t.Run(string(alg), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, alg)
			tok, signed := e.accessToken(t, token.Claims{Subject: "user", SubjectIssuer: idpIssuer, Audience: []string{callerB.ID}, Scope: []string{"read"},
				Confirmation: callerA.Thumbprint, Actor: chain(callerA.ID)}, 5*time.Minute)
			b, _ := e.keys.JWKS()
			keys := parseJWKS(t, b)
			keyfunc := func(tk *jwt.Token) (any, error) {
				if tk.Header["typ"] != "at+jwt" {
					return nil, fmt.Errorf("typ %v", tk.Header["typ"])
				}
				k, ok := keys[fmt.Sprint(tk.Header["kid"])]
				if !ok || k.Alg != tk.Method.Alg() || k.Use != "sig" {
					return nil, fmt.Errorf("no key for kid %v", tk.Header["kid"])
				}
				return k.public()
			}
			opts := []jwt.ParserOption{jwt.WithIssuer(issuer), jwt.WithAudience(callerB.ID), jwt.WithExpirationRequired(),
				jwt.WithIssuedAt(), jwt.WithTimeFunc(e.clock.Now), jwt.WithStrictDecoding()}
			parsed, err := jwt.Parse(tok, keyfunc, append(opts, jwt.WithValidMethods([]string{string(alg)}))...)
			if err != nil {
				t.Fatalf("golang-jwt rejects our token: %v", err)
			}
			claims := parsed.Claims.(jwt.MapClaims)
			if claims["jti"] != signed.ID || claims["sub"] != "user" ||
				fmt.Sprint(claims["cnf"]) != fmt.Sprint(map[string]any{"x5t#S256": callerA.Thumbprint}) {
				t.Fatalf("claims as golang-jwt sees them: %v", claims)
			}
			other := map[hsm.Alg]string{hsm.ES256: "ES384", hsm.ES384: "ES256", hsm.PS256: "RS256"}[alg]
			if _, err := jwt.Parse(tok, keyfunc, append(opts, jwt.WithValidMethods([]string{other}))...); err == nil {
				t.Fatalf("golang-jwt pinned to %s accepted a %s token", other, alg)
			}
		})
	}
}
