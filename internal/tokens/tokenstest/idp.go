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
	issuer string
	key    *ecdsa.PrivateKey
	jwks   []byte
}

const idpKID = "idp-key-1"

func newIdP(t testing.TB) *IdP {
	t.Helper()
	return NewIdP(t, IdPIssuer)
}

// NewIdP makes another IdP, of issuer; give a Verifier its Issuer to
// accept its tokens.
func NewIdP(t testing.TB, issuer string) *IdP {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	jwks, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: idpKID, Algorithm: "ES256", Use: "sig"}}})
	if err != nil {
		t.Fatal(err)
	}
	return &IdP{issuer: issuer, key: key, jwks: jwks}
}

// Issuer is the IdP's configuration for the Verifier.
func (p *IdP) Issuer() signer.ExternalIssuer {
	return signer.ExternalIssuer{Issuer: p.issuer, JWKS: p.jwks, Algorithms: []string{"ES256"}}
}

// Token is an access token of the IdP for user sub, issued to audience.
func (p *IdP) Token(t testing.TB, sub, audience, scope string) string {
	t.Helper()
	now := time.Now()
	return p.Sign(t, map[string]any{
		"iss": p.issuer, "sub": sub, "aud": []string{audience}, "scope": scope,
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(10 * time.Minute).Unix(), "jti": "idp-" + now.Format(time.RFC3339Nano),
	})
}

// Sign is an access token of the IdP with exactly the given claims.
func (p *IdP) Sign(t testing.TB, claims map[string]any) string {
	t.Helper()
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	return p.SignJSON(t, payload)
}

// SignJSON is an access token of the IdP whose claims are payload, as
// is: for claims sets no JSON encoder would write, such as a member twice.
func (p *IdP) SignJSON(t testing.TB, payload []byte) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("at+jwt").WithHeader("kid", idpKID)
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: p.key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	jws, err := sig.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}
