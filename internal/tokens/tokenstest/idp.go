package tokenstest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/sigil-dev/sigil/signer"
)

// IdP is a user identity provider whose access tokens may start a
// delegation chain: an external issuer with a software key.
type IdP struct {
	key  *ecdsa.PrivateKey
	jwks []byte
}

const idpKID = "idp-key-1"

func newIdP(t testing.TB) *IdP {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	jwks, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: idpKID, Algorithm: "ES256", Use: "sig"}}})
	if err != nil {
		t.Fatal(err)
	}
	return &IdP{key: key, jwks: jwks}
}

// Issuer is the IdP's configuration for the Verifier.
func (p *IdP) Issuer() signer.ExternalIssuer {
	return signer.ExternalIssuer{Issuer: IdPIssuer, JWKS: p.jwks, Algorithms: []string{"ES256"}}
}

// Token is an access token of the IdP for user sub, issued to audience.
func (p *IdP) Token(t testing.TB, sub, audience, scope string) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("at+jwt").WithHeader("kid", idpKID)
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: p.key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	claims, _ := json.Marshal(map[string]any{
		"iss": IdPIssuer, "sub": sub, "aud": []string{audience}, "scope": scope,
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(10 * time.Minute).Unix(), "jti": "idp-" + now.Format(time.RFC3339Nano),
	})
	jws, err := sig.Sign(claims)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}
