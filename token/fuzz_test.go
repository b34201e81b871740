package token_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/sigil-dev/sigil/token"
)

func addTestdata(f *testing.F, pattern string) {
	files, err := filepath.Glob(filepath.Join("testdata", pattern))
	if err != nil || len(files) == 0 {
		f.Fatalf("no seeds %s: %v", pattern, err)
	}
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

// FuzzClaims feeds the claims reader the JSON of a token's payload, which
// a verifier decodes only after the signature checks but which an
// external issuer writes: it must not panic, and what it accepts it
// writes back and reads again to the same claims.
func FuzzClaims(f *testing.F) {
	addTestdata(f, "claims-*.json")
	f.Add([]byte(`{"aud":"a","act":{"sub":"b","act":{"sub":"c"}}}`))
	f.Add([]byte(`{"exp":1e300,"nbf":-0,"iat":null}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var c token.Claims
		if json.Unmarshal(b, &c) != nil {
			return
		}
		out, err := json.Marshal(c)
		if err != nil {
			t.Fatalf("accepted claims do not encode: %v", err)
		}
		var again token.Claims
		if err := json.Unmarshal(out, &again); err != nil {
			t.Fatalf("claims written as %s do not read back: %v", out, err)
		}
		if c.Subject != again.Subject || !c.Expiry.Equal(again.Expiry) || c.Actor.Depth() != again.Actor.Depth() ||
			len(c.Audience) != len(again.Audience) || c.Confirmation != again.Confirmation {
			t.Fatalf("round trip changed the claims:\n%+v\n%+v", c, again)
		}
	})
}

// FuzzParseJWKS feeds the JWK Set parser the bytes an issuer serves
// (sigild, or an external IdP): it must not panic, and a set it accepts
// holds no private key material and only keys that suit an allowed
// algorithm.
func FuzzParseJWKS(f *testing.F) {
	addTestdata(f, "jwks-*.json")
	f.Add([]byte(`{"keys":[{"kty":"RSA","kid":"r","n":"AQAB","e":"AQAB","d":"AQAB"}]}`))
	algs := []string{"ES256", "RS256"}
	f.Fuzz(func(t *testing.T, b []byte) {
		keys, err := token.ParseJWKS(b, algs)
		if err != nil {
			return
		}
		var set struct{ Keys []json.RawMessage }
		if err := json.Unmarshal(b, &set); err != nil {
			t.Fatalf("accepted a JWKS that is not JSON: %v", err)
		}
		for _, raw := range set.Keys {
			var k jose.JSONWebKey
			if k.UnmarshalJSON(raw) == nil && !k.IsPublic() {
				t.Fatalf("accepted a JWKS with private key material: %s", raw)
			}
		}
		for kid, k := range keys {
			if kid == "" || (!k.Suits("ES256") && !k.Suits("RS256")) {
				t.Fatalf("kept key %q that suits no allowed algorithm", kid)
			}
		}
	})
}
