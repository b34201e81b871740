package verify

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/cryptosigner"

	"github.com/sigil-dev/sigil/hsm"
	"github.com/sigil-dev/sigil/token"
)

// TestVerifyAttacks presents one token per defect and asserts the exact
// reason it is refused.
func TestVerifyAttacks(t *testing.T) {
	e := newEnv(t)
	v := e.verifier(t, e.config(t))
	attacker, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	attackerJWK := jose.JSONWebKey{Key: &attacker.PublicKey, Algorithm: "ES256"}
	now := time.Now().Unix()

	with := func(edit func(h, c map[string]any)) string {
		h, c := e.header(), e.claims()
		edit(h, c)
		return craft(t, h, c, e.key)
	}
	valid := e.token(t, e.mint, e.certA)
	hs256 := func() string {
		h, c := e.header(), e.claims()
		h["alg"] = "HS256"
		jwks := *e.jwks.Load() // the attacker knows the public key
		in := craft(t, h, c, e.key)
		in = in[:strings.LastIndexByte(in, '.')]
		mac := hmac.New(sha256.New, jwks)
		mac.Write([]byte(in))
		return in + "." + b64(mac.Sum(nil))
	}()

	tests := []struct {
		name   string
		token  string
		peer   *x509.Certificate
		offset time.Duration // verifier clock ahead of real time
		want   error         // nil: valid
	}{
		{name: "valid", token: valid, peer: e.certA},
		{name: "valid crafted", token: with(func(h, c map[string]any) {}), peer: e.certA},
		{name: "valid aud string", token: with(func(h, c map[string]any) { c["aud"] = testAudience }), peer: e.certA},
		{name: "wrong audience", token: e.token(t, e.mint, e.certA, func(c *token.Claims) { c.Audience = []string{"spiffe://sigil.test/workload/payments"} }), peer: e.certA, want: errAudience},
		{name: "no audience", token: with(func(h, c map[string]any) { delete(c, "aud") }), peer: e.certA, want: errAudience},
		{name: "wrong issuer", token: with(func(h, c map[string]any) { c["iss"] = "https://evil.test" }), peer: e.certA, want: errIssuer},
		{name: "expired", token: valid, peer: e.certA, offset: 5*time.Minute + 31*time.Second, want: errExpired},
		{name: "expired within leeway", token: valid, peer: e.certA, offset: 5*time.Minute + 20*time.Second},
		{name: "no exp", token: with(func(h, c map[string]any) { delete(c, "exp") }), peer: e.certA, want: errExpired},
		{name: "not yet valid", token: with(func(h, c map[string]any) { c["nbf"] = now + 120 }), peer: e.certA, want: errNotYetValid},
		{name: "not yet valid within leeway", token: with(func(h, c map[string]any) { c["nbf"] = now + 20 }), peer: e.certA},
		{name: "issued in the future", token: with(func(h, c map[string]any) { c["iat"], c["nbf"] = now+120, now }), peer: e.certA, want: errIssuedFuture},
		{name: "lifetime too long", token: with(func(h, c map[string]any) { c["iat"] = now - 25*3600 }), peer: e.certA, want: errLifetime},
		{name: "no jti", token: with(func(h, c map[string]any) { delete(c, "jti") }), peer: e.certA, want: errNoID},
		{name: "alg none", token: func() string {
			s := with(func(h, c map[string]any) { h["alg"] = "none" })
			return s[:strings.LastIndexByte(s, '.')+1]
		}(), peer: e.certA, want: errAlgorithm},
		{name: "HS256 keyed with the public key", token: hs256, peer: e.certA, want: errAlgorithm},
		{name: "ES384 with an ES256 key", token: with(func(h, c map[string]any) { h["alg"] = "ES384" }), peer: e.certA, want: errAlgorithm},
		{name: "RS256", token: with(func(h, c map[string]any) { h["alg"] = "RS256" }), peer: e.certA, want: errAlgorithm},
		{name: "unknown kid", token: with(func(h, c map[string]any) { h["kid"] = "no-such-key" }), peer: e.certA, want: errUnknownKey},
		{name: "no kid", token: with(func(h, c map[string]any) { delete(h, "kid") }), peer: e.certA, want: errUnknownKey},
		{name: "unpublished key", token: e.token(t, e.mint2, e.certA), peer: e.certA, want: errUnknownKey},
		{name: "jwk header with the attacker's key", token: craft(t, map[string]any{"alg": "ES256", "typ": "at+jwt", "kid": e.key.KID(), "jwk": attackerJWK}, e.claims(), attacker), peer: e.certA, want: errHeader},
		{name: "jku header", token: with(func(h, c map[string]any) { h["jku"] = "https://evil.test/jwks.json" }), peer: e.certA, want: errHeader},
		{name: "x5u header", token: with(func(h, c map[string]any) { h["x5u"] = "https://evil.test/cert.pem" }), peer: e.certA, want: errHeader},
		{name: "x5c header", token: with(func(h, c map[string]any) { h["x5c"] = []string{b64(e.certA.Raw)} }), peer: e.certA, want: errHeader},
		{name: "crit header", token: with(func(h, c map[string]any) { h["crit"] = []string{"exp"}; h["exp"] = now }), peer: e.certA, want: errHeader},
		{name: "attacker signature under our kid", token: craft(t, e.header(), e.claims(), attacker), peer: e.certA, want: errSignature},
		{name: "payload swapped", token: func() string {
			other := with(func(h, c map[string]any) { c["scope"] = "orders:read orders:write" })
			p := strings.Split(valid, ".")
			return p[0] + "." + strings.Split(other, ".")[1] + "." + p[2]
		}(), peer: e.certA, want: errSignature},
		{name: "wrong typ JWT", token: with(func(h, c map[string]any) { h["typ"] = "JWT" }), peer: e.certA, want: errType},
		{name: "revocation event as access token", token: signSET(t, e.key, issuer, "x", 1), peer: e.certA, want: errType},
		{name: "no typ", token: with(func(h, c map[string]any) { delete(h, "typ") }), peer: e.certA, want: errType},
		{name: "oversized", token: valid + strings.Repeat("A", MaxTokenSize), peer: e.certA, want: errTooLarge},
		{name: "five parts (JWE)", token: valid + ".a.b", peer: e.certA, want: errMalformed},
		{name: "one dot", token: "abc.def", peer: e.certA, want: errMalformed},
		{name: "empty", token: "", peer: e.certA, want: errMalformed},
		{name: "header not base64", token: "!!." + strings.SplitN(valid, ".", 2)[1], peer: e.certA, want: errMalformed},
		{name: "claims not JSON", token: craftRaw(t, e, "not json"), peer: e.certA, want: errMalformed},
		{name: "stolen token replayed with another certificate", token: valid, peer: e.certB, want: errNotBound},
		{name: "token presented without a certificate", token: valid, peer: nil, want: errNotBound},
		{name: "unbound token", token: with(func(h, c map[string]any) { delete(c, "cnf") }), peer: e.certA, want: errNotBound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.clock.Set(tt.offset)
			defer e.clock.Set(0)
			c, err := v.Verify(t.Context(), tt.token, tt.peer)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if c.Subject != "spiffe://sigil.test/user/alice" || c.ClientID != caller {
					t.Errorf("claims = %+v", c)
				}
				return
			}
			if !errors.Is(err, ErrInvalidToken) || !errors.Is(err, tt.want) {
				t.Fatalf("Verify error = %v, want %v", err, tt.want)
			}
			if c != nil {
				t.Errorf("claims returned with an error")
			}
		})
	}
}

// craftRaw signs a raw payload with the trusted key.
func craftRaw(t *testing.T, e *env, payload string) string {
	t.Helper()
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: cryptosigner.Opaque(e.key)},
		(&jose.SignerOptions{}).WithType("at+jwt").WithHeader("kid", e.key.KID()))
	if err != nil {
		t.Fatalf("NewSigner: %v", err)
	}
	jws, err := sig.Sign([]byte(payload))
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	s, _ := jws.CompactSerialize()
	return s
}

func TestClaims(t *testing.T) {
	e := newEnv(t)
	v := e.verifier(t, e.config(t))
	tok := e.token(t, e.mint, e.certA, func(c *token.Claims) { c.Scope = []string{"orders:read", "orders:write"} })
	c, err := v.Verify(t.Context(), tok, e.certA)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	wantChain := []string{caller, "spiffe://sigil.test/workload/gateway"}
	if !slices.Equal(c.ActChain(), wantChain) {
		t.Errorf("ActChain = %v, want %v", c.ActChain(), wantChain)
	}
	if !c.HasScope("orders:write") || c.HasScope("orders") {
		t.Errorf("HasScope wrong for %v", c.Scope)
	}
	if c.Issuer != issuer || !slices.Equal(c.Audience, []string{testAudience}) || c.ID != jtiOf(t, tok) ||
		c.Confirmation != token.Thumbprint(e.certA.Raw) || c.Expiry.IsZero() {
		t.Errorf("claims = %+v", c)
	}
	if c.Raw()["client_id"] != caller {
		t.Errorf("Raw()[client_id] = %v", c.Raw()["client_id"])
	}
}

// TestVerifyAlgorithms: a token signed with each of sigil's algorithms
// verifies, and the same token with a changed or shortened signature does
// not.
func TestVerifyAlgorithms(t *testing.T) {
	e := newEnv(t)
	for _, alg := range []hsm.Alg{hsm.ES256, hsm.ES384, hsm.PS256} {
		t.Run(string(alg), func(t *testing.T) {
			keys, mint := newKeys(t, e.h, strings.ToLower(string(alg)), alg)
			e.publish(t, keys)
			v := e.verifier(t, e.config(t))
			tok := e.token(t, mint, e.certA)
			if _, err := v.Verify(t.Context(), tok, e.certA); err != nil {
				t.Fatalf("Verify: %v", err)
			}
			i := strings.LastIndexByte(tok, '.')
			sig, _ := base64.RawURLEncoding.DecodeString(tok[i+1:])
			flipped := slices.Clone(sig)
			flipped[len(flipped)/2] ^= 1
			for name, bad := range map[string][]byte{"changed": flipped, "shortened": sig[:len(sig)-1]} {
				if _, err := v.Verify(t.Context(), tok[:i+1]+b64(bad), e.certA); !errors.Is(err, errSignature) {
					t.Errorf("Verify with a %s signature = %v, want %v", name, err, errSignature)
				}
			}
		})
	}
}

// TestJWKSKeyNotSuitingAlg: a JWKS key whose type or curve is not its
// alg's is not used, even for a token with its kid and alg.
func TestJWKSKeyNotSuitingAlg(t *testing.T) {
	e := newEnv(t)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	tests := []struct {
		name string
		key  any
		alg  string
	}{
		{"ES256 on P-384", &p384.PublicKey, "ES256"},
		{"ES384 on P-256", &p256.PublicKey, "ES384"},
		{"PS256 on P-256", &p256.PublicKey, "PS256"},
		{"ES256 on RSA", &rsaKey.PublicKey, "ES256"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: tt.key, KeyID: "unsuited", Algorithm: tt.alg, Use: "sig"}}})
			cfg := e.config(t)
			cfg.JWKS = func(context.Context) ([]byte, error) { return jwks, nil }
			if _, err := New(t.Context(), cfg); err == nil || err.Error() != "verify: JWKS has no usable signing key" {
				t.Fatalf("New error = %v, want no usable signing key", err)
			}
		})
	}
}

// TestJWKSRefresh: a token from a newly published key verifies once the
// JWKS is fetched again, and unknown kids fetch at most once per
// MinRefresh however many arrive.
func TestJWKSRefresh(t *testing.T) {
	e := newEnv(t)
	cfg := e.config(t)
	cfg.MinRefresh = time.Minute
	v := e.verifier(t, cfg)
	if n := e.fetches.Load(); n != 1 {
		t.Fatalf("fetches after New = %d, want 1", n)
	}
	tok := e.token(t, e.mint2, e.certA)
	e.publish(t, e.keys, e.other) // rotation: sigild publishes the new key
	for range 100 {
		if _, err := v.Verify(t.Context(), tok, e.certA); !errors.Is(err, errUnknownKey) {
			t.Fatalf("Verify before MinRefresh = %v, want %v", err, errUnknownKey)
		}
	}
	if n := e.fetches.Load(); n != 1 {
		t.Fatalf("fetches within MinRefresh = %d, want 1", n)
	}
	e.clock.Advance(time.Minute)
	if _, err := v.Verify(t.Context(), tok, e.certA); err != nil {
		t.Fatalf("Verify after refresh: %v", err)
	}
	for range 100 {
		garbage := craft(t, map[string]any{"alg": "ES256", "typ": "at+jwt", "kid": "flood"}, e.claims(), e.key)
		if _, err := v.Verify(t.Context(), garbage, e.certA); !errors.Is(err, errUnknownKey) {
			t.Fatalf("Verify unknown kid = %v", err)
		}
	}
	if n := e.fetches.Load(); n != 2 {
		t.Fatalf("fetches = %d, want 2: unknown kids must not fetch more than once per MinRefresh", n)
	}
	// the old key's tokens still verify
	if _, err := v.Verify(t.Context(), e.token(t, e.mint, e.certA), e.certA); err != nil {
		t.Fatalf("Verify old key: %v", err)
	}
}

func TestNewConfig(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"no issuer", func(c *Config) { c.Issuer = "" }, "verify: config: Issuer is required"},
		{"no audience", func(c *Config) { c.Audience = "" }, "verify: config: Audience is required"},
		{"no JWKS", func(c *Config) { c.JWKS = nil }, "verify: config: JWKSURL or JWKS is required"},
		{"HS256 allowed", func(c *Config) { c.Algorithms = []string{"HS256"} }, `verify: config: Algorithms: "HS256" is not one of [ES256 ES384 PS256]`},
		{"JWKS without usable keys", func(c *Config) {
			c.JWKS = func(ctx context.Context) ([]byte, error) { return []byte(`{"keys":[]}`), nil }
		}, "verify: JWKS has no usable signing key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := e.config(t)
			tt.edit(&c)
			if _, err := New(t.Context(), c); err == nil || err.Error() != tt.want {
				t.Fatalf("New error = %v, want %q", err, tt.want)
			}
		})
	}
}

// TestVerifyIdentities presents tokens, signed by sigil's key, that name
// identities sigil does not issue: a resource server must be able to
// tell a workload from an IdP's user by the standard claims, and trust
// every actor to be a workload. Each is refused with errIdentity.
func TestVerifyIdentities(t *testing.T) {
	e := newEnv(t)
	v := e.verifier(t, e.config(t))
	const idp, payments = "https://idp.test", "spiffe://sigil.test/workload/payments"
	with := func(edit map[string]any) string {
		c := e.claims()
		for k, val := range edit {
			c[k] = val
		}
		return craft(t, e.header(), c, e.key)
	}
	tests := []struct {
		name  string
		token string
		user  bool  // valid: the subject is an IdP's user, not a workload
		want  error // nil: valid
	}{
		{name: "workload", token: with(nil)},
		{name: "IdP user", token: with(map[string]any{"sub": "alice", "sigil_sub_iss": idp}), user: true},
		{name: "workload acting through workloads", token: with(map[string]any{"act": map[string]any{"sub": caller, "act": map[string]any{"sub": payments}}})},
		{name: "user sub without its issuer", token: with(map[string]any{"sub": "alice"}), want: errIdentity},
		{name: "SPIFFE ID as an IdP user", token: with(map[string]any{"sub": payments, "sigil_sub_iss": idp}), want: errIdentity},
		{name: "leading space before a SPIFFE ID", token: with(map[string]any{"sub": " " + payments, "sigil_sub_iss": idp}), want: errIdentity},
		{name: "upper-case scheme", token: with(map[string]any{"sub": "SPIFFE://sigil.test/workload/payments"}), want: errIdentity},
		{name: "percent-encoded scheme from an IdP", token: with(map[string]any{"sub": "spiffe%3A%2F%2Fsigil.test", "sigil_sub_iss": idp}), want: errIdentity},
		{name: "act naming a user", token: with(map[string]any{"act": map[string]any{"sub": "bob"}}), want: errIdentity},
		{name: "act nesting a lookalike", token: with(map[string]any{"act": map[string]any{"sub": caller, "act": map[string]any{"sub": " " + payments}}}), want: errIdentity},
		{name: "act without sub", token: with(map[string]any{"act": map[string]any{"act": map[string]any{"sub": payments}}}), want: errMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := v.Verify(t.Context(), tt.token, e.certA)
			switch {
			case tt.want != nil && (!errors.Is(err, ErrInvalidToken) || !errors.Is(err, tt.want)):
				t.Fatalf("Verify error = %v, want %v", err, tt.want)
			case tt.want != nil:
				return
			case err != nil:
				t.Fatalf("Verify: %v", err)
			case c.IsUser() != tt.user || c.IsWorkload() == tt.user:
				t.Fatalf("sub %q from %q: IsUser %v, IsWorkload %v", c.Subject, c.SubjectIssuer, c.IsUser(), c.IsWorkload())
			}
		})
	}
}
