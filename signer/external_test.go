package signer_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/sigil-dev/sigil/api"
	"github.com/sigil-dev/sigil/signer"
)

// idp is a user identity provider with software keys, for external
// subject tokens.
type idp struct {
	t   testing.TB
	now time.Time
	ec  *ecdsa.PrivateKey
	rsa *rsa.PrivateKey
}

func newIdP(t testing.TB, now time.Time) *idp {
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return &idp{t: t, now: now, ec: newECKey(t, elliptic.P256()), rsa: rk}
}

// jwks publishes the given keys, kid "ec" or "rsa" by type.
func (p *idp) jwks(keys ...crypto.Signer) []byte {
	set := jose.JSONWebKeySet{}
	for _, k := range keys {
		kid := "ec"
		if _, ok := k.(*rsa.PrivateKey); ok {
			kid = "rsa"
		}
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: k.Public(), KeyID: kid, Use: "sig"})
	}
	return mustJSON(p.t, set)
}

// token is a user token for A: sub is the IdP's user id, email the mapped
// subject, scp the mapped scope.
func (p *idp) token(hdrMod, clMod map[string]any) string {
	hdr := apply(map[string]any{"alg": "ES256", "kid": "ec", "typ": "at+jwt"}, hdrMod)
	cl := apply(map[string]any{
		"iss": idpIssuer, "sub": "00u1abc", "email": "alice@example.com", "aud": []string{callerA.ID},
		"iat": p.now.Unix(), "exp": p.now.Add(20 * time.Minute).Unix(), "jti": "idp-jti", "scp": []string{"read", "write", "delete"},
	}, clMod)
	var sign signFunc
	switch hdr["alg"] {
	case "RS256":
		sign = jwsSign(p.t, p.rsa, "RS256")
	default:
		sign = jwsSign(p.t, p.ec, "ES256")
	}
	return craftRaw(mustJSON(p.t, hdr), mustJSON(p.t, cl), sign)
}

func (p *idp) issuer(keys ...crypto.Signer) signer.ExternalIssuer {
	if len(keys) == 0 {
		keys = []crypto.Signer{p.ec, p.rsa}
	}
	return signer.ExternalIssuer{Issuer: idpIssuer, JWKS: p.jwks(keys...), Algorithms: []string{"ES256"},
		SubjectClaim: "email", ScopeClaim: "scp"}
}

func TestExternalSubjectTokens(t *testing.T) {
	p := newIdP(t, t0)
	now := func() time.Time { return t0 }
	v, err := signer.NewVerifier(issuer, staticKeys{}, signer.WithClock(now), signer.WithExternalIssuers(p.issuer()))
	if err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}
	tests := []struct {
		name      string
		token     string
		tokenType string
		code      error
	}{
		{"valid", p.token(nil, nil), api.TokenTypeAccessToken, ok},
		{"valid with sigil claims, which are ignored", p.token(nil, map[string]any{
			"sigil_evidence": "forged", "sigil_sub_iss": "https://forged.test", "cnf": map[string]string{"x5t#S256": callerA.Thumbprint},
		}), api.TokenTypeAccessToken, ok},
		{"typ JWT not configured", p.token(map[string]any{"typ": "JWT"}, nil), api.TokenTypeJWT, invalid},
		{"subject is a SPIFFE ID", p.token(nil, map[string]any{"email": callerC.ID}), api.TokenTypeAccessToken, invalid},
		{"subject is a SPIFFE ID behind a space", p.token(nil, map[string]any{"email": " " + callerC.ID}), api.TokenTypeAccessToken, invalid},
		{"act naming a workload", p.token(nil, map[string]any{"act": map[string]any{"sub": callerC.ID}}), api.TokenTypeAccessToken, invalid},
		{"valid with client_id naming a workload, which is not read", p.token(nil, map[string]any{"client_id": callerC.ID}), api.TokenTypeAccessToken, ok},
		{"mapped subject claim missing", p.token(nil, map[string]any{"email": del}), api.TokenTypeAccessToken, invalid},
		{"RS256 outside the allow-list", p.token(map[string]any{"alg": "RS256", "kid": "rsa"}, nil), api.TokenTypeAccessToken, invalid},
		{"HS256 with the public key", craftRaw(mustJSON(t, map[string]any{"alg": "HS256", "kid": "ec", "typ": "at+jwt"}),
			mustJSON(t, map[string]any{"iss": idpIssuer, "email": "a@b", "aud": callerA.ID, "exp": t0.Add(time.Minute).Unix()}),
			hmacSign(p.jwks(p.ec), "HS256")), api.TokenTypeAccessToken, invalid},
		{"as a transaction token", p.token(map[string]any{"typ": "txntoken+jwt"}, nil), api.TokenTypeTxnToken, invalid},
		{"another audience", p.token(nil, map[string]any{"aud": callerB.ID}), api.TokenTypeAccessToken, invalid},
		{"unknown kid", p.token(map[string]any{"kid": "other"}, nil), api.TokenTypeAccessToken, invalid},
		{"IdP key claiming our issuer", p.token(nil, map[string]any{"iss": issuer}), api.TokenTypeAccessToken, invalid},
		{"expired", p.token(nil, map[string]any{"exp": t0.Add(-time.Hour).Unix()}), api.TokenTypeAccessToken, invalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			verify := v.Verify
			if tt.tokenType == api.TokenTypeTxnToken {
				verify = v.VerifyTxn
			}
			c, err := verify(t.Context(), tt.token, callerA.ID)
			if got := kindOf(t, err); got != tt.code {
				t.Fatalf("got %v (%v), want %v", got, err, tt.code)
			}
			if tt.code != ok {
				return
			}
			want := []string{"read", "write", "delete"}
			if c.Subject != "alice@example.com" || c.SubjectIssuer != idpIssuer || c.Evidence != "" || c.Confirmation != "" ||
				c.ClientID != "" || c.Actor != nil ||
				len(c.Scope) != 3 || c.Scope[2] != want[2] {
				t.Fatalf("claims %+v", c)
			}
		})
	}
}

func TestExternalIssuerConfig(t *testing.T) {
	p := newIdP(t, t0)
	priv := mustJSON(t, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: p.ec, KeyID: "ec"}}})
	fetch := func(context.Context) ([]byte, error) { return nil, nil }
	tests := []struct {
		name string
		mod  func(e *signer.ExternalIssuer)
	}{
		{"alg none", func(e *signer.ExternalIssuer) { e.Algorithms = []string{"none"} }},
		{"alg HS256", func(e *signer.ExternalIssuer) { e.Algorithms = []string{"ES256", "HS256"} }},
		{"no algorithms", func(e *signer.ExternalIssuer) { e.Algorithms = nil }},
		{"no issuer", func(e *signer.ExternalIssuer) { e.Issuer = "" }},
		{"our issuer", func(e *signer.ExternalIssuer) { e.Issuer = issuer }},
		{"JWKS and Fetch", func(e *signer.ExternalIssuer) { e.Fetch = fetch }},
		{"neither JWKS nor Fetch", func(e *signer.ExternalIssuer) { e.JWKS = nil }},
		{"JWKS with a private key", func(e *signer.ExternalIssuer) { e.JWKS = priv }},
		{"JWKS not JSON", func(e *signer.ExternalIssuer) { e.JWKS = []byte("keys") }},
		{"JWKS without usable key", func(e *signer.ExternalIssuer) { e.JWKS = []byte(`{"keys":[{"kty":"EC"}]}`) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := p.issuer()
			tt.mod(&e)
			if _, err := signer.NewVerifier(issuer, staticKeys{}, signer.WithExternalIssuers(e)); err == nil {
				t.Fatal("NewVerifier accepted the configuration")
			}
		})
	}
}

// TestExternalKeyRefresh: an unknown kid fetches the IdP's keys again, at
// most once per MinRefresh; a failed fetch keeps the previous keys.
func TestExternalKeyRefresh(t *testing.T) {
	p := newIdP(t, t0)
	clock := &fakeClock{now: t0}
	var fetches atomic.Int32
	published := p.jwks(p.ec)
	fail := false
	ext := signer.ExternalIssuer{Issuer: idpIssuer, Algorithms: []string{"ES256", "RS256"}, SubjectClaim: "email", MinRefresh: time.Minute,
		Fetch: func(context.Context) ([]byte, error) {
			fetches.Add(1)
			if fail {
				return nil, errors.New("IdP down")
			}
			return published, nil
		}}
	v, err := signer.NewVerifier(issuer, staticKeys{}, signer.WithClock(clock.Now), signer.WithExternalIssuers(ext))
	if err != nil {
		t.Fatal(err)
	}
	verify := func(tok string) error { _, err := v.Verify(t.Context(), tok, callerA.ID); return err }
	ecTok := func() string { return p.token(nil, nil) }
	rsaTok := func() string { return p.token(map[string]any{"alg": "RS256", "kid": "rsa"}, nil) }
	steps := []struct {
		name    string
		do      func()
		token   func() string
		ok      bool
		fetches int32
	}{
		{"first use fetches", nil, ecTok, true, 1},
		{"known kid does not fetch", nil, ecTok, true, 1},
		{"IdP adds a key: unknown kid fetches at most once a minute", func() { published = p.jwks(p.ec, p.rsa) }, rsaTok, false, 1},
		{"after MinRefresh the unknown kid fetches", func() { clock.Advance(time.Minute) }, rsaTok, true, 2},
		{"a flood of unknown kids fetches once", func() {
			clock.Advance(time.Minute)
			for range 20 {
				_ = verify(p.token(map[string]any{"kid": "nope"}, nil))
			}
		}, ecTok, true, 3},
		{"failed fetch keeps the keys", func() { clock.Advance(2 * time.Hour); p.now, fail = clock.Now(), true }, ecTok, true, 4},
	}
	for _, s := range steps {
		if s.do != nil {
			s.do()
		}
		err := verify(s.token())
		if (err == nil) != s.ok || fetches.Load() != s.fetches {
			t.Fatalf("%s: err %v, %d fetches; want ok=%v, %d fetches", s.name, err, fetches.Load(), s.ok, s.fetches)
		}
	}
}
