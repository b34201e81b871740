package verify

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/token"
)

const trustDomain = "spiffe://sigil.test"

// txnToken mints a transaction token of the trust domain, as sigild does.
func (e *env) txnToken(t testing.TB, edit ...func(*token.Claims)) string {
	t.Helper()
	now := time.Now()
	c := token.Claims{
		Subject: "spiffe://sigil.test/user/alice", Audience: []string{trustDomain}, ClientID: caller,
		Scope: []string{"orders:read"}, Confirmation: token.Thumbprint(e.certB.Raw), RequestingWorkload: caller,
		TxnContext: map[string]any{"action": "checkout"}, IssuedAt: now, Expiry: now.Add(2 * time.Minute),
	}
	for _, f := range edit {
		f(&c)
	}
	m, err := e.mint.TxnToken(t.Context(), c)
	if err != nil {
		t.Fatalf("TxnToken: %v", err)
	}
	return m.Token
}

// txnClaims are valid transaction token claims, as a map to edit.
func txnClaims() map[string]any {
	now := time.Now().Unix()
	return map[string]any{
		"iss": issuer, "sub": "spiffe://sigil.test/user/alice", "aud": []string{trustDomain},
		"iat": now, "exp": now + 120, "jti": "txn-" + strconv.FormatInt(now, 10), "txn": "t-1",
		"scope": "orders:read", "req_wl": caller, "tctx": map[string]any{"action": "checkout"},
	}
}

// A transaction token verifies with VerifyTxn, its claims as minted; and
// neither kind of token passes as the other.
func TestVerifyTxn(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	v := e.verifier(t, e.config(t))
	txn := e.txnToken(t)
	c, err := v.VerifyTxn(t.Context(), txn)
	if err != nil {
		t.Fatalf("VerifyTxn: %v", err)
	}
	if c.Type != token.TxnToken || c.Txn == "" || c.RequestingWorkload != caller || !c.HasScope("orders:read") ||
		c.TxnContext["action"] != "checkout" || c.Token() != txn {
		t.Errorf("claims %+v", c)
	}
	// An access token is no transaction token, and a transaction token no
	// access token: typ decides, before any claim is read.
	if _, err := v.VerifyTxn(t.Context(), e.token(t, e.mint, e.certA)); !errors.Is(err, errType) {
		t.Errorf("VerifyTxn accepted an access token: %v", err)
	}
	if _, err := v.Verify(t.Context(), txn, e.certB); !errors.Is(err, errType) {
		t.Errorf("Verify accepted a transaction token: %v", err)
	}
	// Even one that names this service in its audience and is bound to
	// the peer: a typ at+jwt with transaction claims is refused by
	// VerifyTxn, a txntoken+jwt with access claims by Verify.
	hdr := e.header()
	both := txnClaims()
	both["aud"] = []string{trustDomain, testAudience}
	both["cnf"] = map[string]string{"x5t#S256": token.Thumbprint(e.certA.Raw)}
	if _, err := v.VerifyTxn(t.Context(), craft(t, hdr, both, e.key)); !errors.Is(err, errType) {
		t.Errorf("VerifyTxn accepted typ at+jwt: %v", err)
	}
	hdr["typ"] = "txntoken+jwt"
	if _, err := v.Verify(t.Context(), craft(t, hdr, both, e.key), e.certA); !errors.Is(err, errType) {
		t.Errorf("Verify accepted typ txntoken+jwt: %v", err)
	}
	if _, err := v.VerifyTxn(t.Context(), craft(t, hdr, both, e.key)); err != nil {
		t.Errorf("VerifyTxn refused a well-formed crafted token: %v", err)
	}
}

// Every claim the draft requires is required; the audience is the trust
// domain; the lifetime is minutes; the algorithm is pinned.
func TestVerifyTxnRefuses(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	v := e.verifier(t, e.config(t))
	hdr := func() map[string]any { h := e.header(); h["typ"] = "txntoken+jwt"; return h }
	type tc struct {
		name  string
		edit  func(h, c map[string]any)
		want  error
		match string
	}
	var tests []tc
	for _, claim := range []string{"iat", "aud", "exp", "txn", "sub", "scope", "req_wl", "jti"} {
		tests = append(tests, tc{"missing " + claim, func(_, c map[string]any) { delete(c, claim) }, errMissingClaim, ": " + claim})
	}
	now := time.Now().Unix()
	tests = append(tests,
		tc{"empty scope", func(_, c map[string]any) { c["scope"] = "" }, errMissingClaim, ": scope"},
		tc{"audience a workload", func(_, c map[string]any) { c["aud"] = []string{testAudience} }, errAudience, ""},
		tc{"audience another trust domain", func(_, c map[string]any) { c["aud"] = []string{"spiffe://other.test"} }, errAudience, ""},
		tc{"another issuer", func(_, c map[string]any) { c["iss"] = "https://evil.test" }, errIssuer, ""},
		tc{"expired", func(_, c map[string]any) { c["iat"], c["exp"] = now-200, now-60 }, errExpired, ""},
		tc{"an hour long", func(_, c map[string]any) { c["exp"] = now + 3600 }, errLifetime, ""},
		tc{"issued in the future", func(_, c map[string]any) { c["iat"], c["exp"] = now+120, now+180 }, errIssuedFuture, ""},
		tc{"alg HS256", func(h, _ map[string]any) { h["alg"] = "HS256" }, errAlgorithm, ""},
		tc{"alg none", func(h, _ map[string]any) { h["alg"] = "none" }, errAlgorithm, ""},
		tc{"no typ", func(h, _ map[string]any) { delete(h, "typ") }, errType, ""},
		tc{"jwk header", func(h, _ map[string]any) { h["jwk"] = map[string]any{"kty": "EC"} }, errHeader, ""},
	)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, c := hdr(), txnClaims()
			tt.edit(h, c)
			_, err := v.VerifyTxn(t.Context(), craft(t, h, c, e.key))
			if !errors.Is(err, tt.want) || !errors.Is(err, ErrInvalidToken) || !strings.Contains(description(err), tt.match) {
				t.Errorf("got %v, want %v%s", err, tt.want, tt.match)
			}
		})
	}
	noTD := e.config(t)
	noTD.Audience = "https://orders.example"
	if _, err := e.verifier(t, noTD).VerifyTxn(t.Context(), e.txnToken(t)); !errors.Is(err, errAudience) {
		t.Errorf("a verifier of no trust domain accepted a transaction token: %v", err)
	}
}

// Middleware verifies a Txn-Token header beside the access token and puts
// its claims in the context; a bad one fails the request; RequireTxn
// refuses a request without one.
func TestMiddlewareTxnToken(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	v := e.verifier(t, e.config(t))
	at := e.token(t, e.mint, e.certA)
	txn := e.txnToken(t)
	var seen *Claims
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen, _ = TxnFromContext(r.Context())
		io.WriteString(w, "ok")
	})
	tests := []struct {
		name      string
		txn       []string
		require   bool
		status    int
		challenge string
	}{
		{name: "with a transaction token", txn: []string{txn}, status: 200},
		{name: "without", status: 200},
		{name: "required and present", txn: []string{txn}, require: true, status: 200},
		{name: "required and absent", require: true, status: 401,
			challenge: `Bearer error="invalid_request", error_description="a Txn-Token header is required"`},
		{name: "an access token as transaction token", txn: []string{at}, status: 401,
			challenge: `Bearer error="invalid_token", error_description="Txn-Token: wrong token type"`},
		{name: "two", txn: []string{txn, txn}, status: 400,
			challenge: `Bearer error="invalid_request", error_description="expected at most one Txn-Token header, a JWT"`},
		{name: "garbage", txn: []string{"a b"}, status: 400,
			challenge: `Bearer error="invalid_request", error_description="expected at most one Txn-Token header, a JWT"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			seen = nil
			var h http.Handler = ok
			if tt.require {
				h = RequireTxn(h)
			}
			r := httptest.NewRequest("GET", "https://orders.test/orders", nil)
			r.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{e.certA}, VerifiedChains: [][]*x509.Certificate{{e.certA}}}
			r.Header.Set("Authorization", "Bearer "+at)
			for _, x := range tt.txn {
				r.Header.Add(TxnTokenHeader, x)
			}
			w := httptest.NewRecorder()
			v.Middleware(h).ServeHTTP(w, r)
			if w.Code != tt.status || w.Header().Get("WWW-Authenticate") != tt.challenge {
				t.Fatalf("%d %q, want %d %q", w.Code, w.Header().Get("WWW-Authenticate"), tt.status, tt.challenge)
			}
			if want := tt.status == 200 && len(tt.txn) > 0; (seen != nil) != want || want && seen.Token() != txn {
				t.Errorf("transaction token in the context: %+v, want %v", seen, want)
			}
		})
	}
}

// FuzzVerifyTxn feeds VerifyTxn arbitrary tokens, seeded with a valid
// transaction token, an access token and crafted ones: it must not panic,
// must fail only with ErrInvalidToken, and may accept only a transaction
// token of the configured issuer and trust domain with every required
// claim.
func FuzzVerifyTxn(f *testing.F) {
	e := newEnv(f)
	v := e.verifier(f, e.config(f))
	f.Add(e.txnToken(f))
	f.Add(e.token(f, e.mint, e.certA))
	h := e.header()
	h["typ"] = "txntoken+jwt"
	f.Add(craft(f, h, txnClaims(), e.key))
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := v.VerifyTxn(t.Context(), tok)
		if err != nil {
			if !errors.Is(err, ErrInvalidToken) || c != nil {
				t.Fatalf("VerifyTxn error %v, claims %v", err, c)
			}
			return
		}
		if c.Issuer != issuer || !c.HasAudience(trustDomain) || c.Txn == "" || c.RequestingWorkload == "" || len(c.Scope) == 0 || c.Type != token.TxnToken {
			t.Fatalf("accepted %+v", c)
		}
	})
}
