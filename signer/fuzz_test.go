package signer_test

import (
	"context"
	"crypto/elliptic"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/sigil-dev/sigil/signer"
)

// FuzzVerify feeds the verifier's parsing path, seeded with a valid token
// and every attack token. It must not panic, must fail only with a
// *TokenError, and may accept only tokens that satisfy every rule.
func FuzzVerify(f *testing.F) {
	key := newECKey(f, elliptic.P256())
	const kid = "fuzz-key"
	now := func() time.Time { return t0 }
	keys := staticKeys{kid: {KID: kid, Alg: "ES256", Key: key.Public()}}
	v, err := signer.NewVerifier(issuer, keys, signer.WithClock(now))
	if err != nil {
		f.Fatal(err)
	}
	k := newKit(f, t0, key, "ES256", kid)
	for _, a := range attacks() {
		f.Add(a.token(k))
	}
	f.Fuzz(func(t *testing.T, token string) {
		c, err := v.Verify(context.Background(), token, callerB.ID)
		var te *signer.TokenError
		switch {
		case err != nil && (!errors.As(err, &te) || (te.Kind != signer.ErrMalformed && te.Kind != signer.ErrInvalid)):
			t.Fatalf("error is not a TokenError: %v", err)
		case err != nil:
			return
		case len(token) > signer.MaxTokenSize || strings.Count(token, ".") != 2:
			t.Fatalf("accepted a token of %d bytes with %d dots", len(token), strings.Count(token, "."))
		case c.Issuer != issuer || c.Subject == "" || !slices.Contains(c.Audience, callerB.ID):
			t.Fatalf("accepted claims %+v", c)
		case !t0.Before(c.Expiry.Add(signer.DefaultLeeway)) || t0.Add(signer.DefaultLeeway).Before(c.NotBefore):
			t.Fatalf("accepted a token outside its validity: %+v", c)
		}
	})
}

// FuzzExternalJWKS feeds an external issuer's JWK Set parser (the bytes an
// IdP serves): it must not panic, and a set it accepts must hold no
// private key material.
func FuzzExternalJWKS(f *testing.F) {
	p := newIdP(f, t0)
	f.Add(p.jwks(p.ec, p.rsa))
	f.Add([]byte(`{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"h"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"EC","crv":"P-256","kid":"x","x":"","y":""}]}`))
	f.Add(mustJSON(f, map[string]any{"keys": []any{map[string]any{"kty": "RSA", "kid": "r", "n": "AQAB", "e": "AQAB", "d": "AQAB"}}}))
	f.Fuzz(func(t *testing.T, jwks []byte) {
		ext := signer.ExternalIssuer{Issuer: idpIssuer, JWKS: jwks, Algorithms: []string{"ES256", "RS256"}}
		if _, err := signer.NewVerifier(issuer, staticKeys{}, signer.WithExternalIssuers(ext)); err != nil {
			return
		}
		var set struct{ Keys []json.RawMessage }
		if err := json.Unmarshal(jwks, &set); err != nil {
			t.Fatalf("accepted a JWKS that is not JSON: %v", err)
		}
		for _, raw := range set.Keys {
			var k jose.JSONWebKey
			if k.UnmarshalJSON(raw) == nil && !k.IsPublic() {
				t.Fatalf("accepted a JWKS with private key material: %s", raw)
			}
		}
	})
}
