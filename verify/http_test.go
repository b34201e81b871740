package verify

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/token"
)

func TestMiddleware(t *testing.T) {
	e := newEnv(t)
	f := newFeedServer(t)
	f.setDown(true)
	cfg := e.config(t)
	v := e.verifier(t, cfg)
	cfg.Revocation.FeedURL = f.URL
	stale := e.verifier(t, cfg) // its feed is down
	tok := e.token(t, e.mint, e.certA)
	readOnly := e.token(t, e.mint, e.certA)
	rw := e.token(t, e.mint, e.certA, func(c *token.Claims) { c.Scope = []string{"orders:read", "orders:write"} })

	var seen *Claims
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen, _ = FromContext(r.Context())
		io.WriteString(w, "ok")
	})
	tests := []struct {
		name      string
		v         *Verifier
		scope     string // RequireScope, if set
		auth      []string
		peer      *x509.Certificate
		noTLS     bool
		offset    time.Duration
		status    int
		challenge string
	}{
		{name: "valid", auth: []string{"Bearer " + tok}, peer: e.certA, status: 200},
		{name: "scheme case-insensitive", auth: []string{"bearer " + tok}, peer: e.certA, status: 200},
		{name: "scope granted", scope: "orders:write", auth: []string{"Bearer " + rw}, peer: e.certA, status: 200},
		{name: "no token", peer: e.certA, status: 401, challenge: `Bearer`},
		{name: "two Authorization headers", auth: []string{"Bearer " + tok, "Bearer " + tok}, peer: e.certA, status: 400,
			challenge: `Bearer error="invalid_request", error_description="expected exactly one Authorization: Bearer header"`},
		{name: "Basic", auth: []string{"Basic YTpi"}, peer: e.certA, status: 400,
			challenge: `Bearer error="invalid_request", error_description="expected exactly one Authorization: Bearer header"`},
		{name: "token with a space", auth: []string{"Bearer a b"}, peer: e.certA, status: 400,
			challenge: `Bearer error="invalid_request", error_description="expected exactly one Authorization: Bearer header"`},
		{name: "empty token", auth: []string{"Bearer "}, peer: e.certA, status: 400,
			challenge: `Bearer error="invalid_request", error_description="expected exactly one Authorization: Bearer header"`},
		{name: "expired", auth: []string{"Bearer " + tok}, peer: e.certA, offset: time.Hour, status: 401,
			challenge: `Bearer error="invalid_token", error_description="token expired"`},
		{name: "garbage", auth: []string{"Bearer abc.def.ghi"}, peer: e.certA, status: 401,
			challenge: `Bearer error="invalid_token", error_description="malformed token"`},
		{name: "stolen token, other certificate", auth: []string{"Bearer " + tok}, peer: e.certB, status: 401,
			challenge: `Bearer error="invalid_token", error_description="token not bound to the client certificate"`},
		{name: "no TLS", auth: []string{"Bearer " + tok}, noTLS: true, status: 401,
			challenge: `Bearer error="invalid_token", error_description="a TLS client certificate is required"`},
		{name: "TLS without client certificate", auth: []string{"Bearer " + tok}, status: 401,
			challenge: `Bearer error="invalid_token", error_description="a TLS client certificate is required"`},
		{name: "insufficient scope", scope: "orders:write", auth: []string{"Bearer " + readOnly}, peer: e.certA, status: 403,
			challenge: `Bearer error="insufficient_scope", error_description="the token lacks a required scope", scope="orders:write"`},
		{name: "revocation unknown", v: stale, auth: []string{"Bearer " + tok}, peer: e.certA, offset: time.Minute - 25*time.Second, status: 503},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.clock.Set(tt.offset)
			defer e.clock.Set(0)
			seen = nil
			vv := v
			if tt.v != nil {
				vv = tt.v
			}
			var h http.Handler = ok
			if tt.scope != "" {
				h = RequireScope(tt.scope, h)
			}
			h = vv.Middleware(h)
			r := httptest.NewRequest("GET", "https://orders.test/orders", nil)
			r.TLS = &tls.ConnectionState{}
			if tt.peer != nil {
				r.TLS.PeerCertificates = []*x509.Certificate{tt.peer}
				r.TLS.VerifiedChains = [][]*x509.Certificate{{tt.peer}}
			}
			if tt.noTLS {
				r.TLS = nil
			}
			for _, a := range tt.auth {
				r.Header.Add("Authorization", a)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tt.status {
				t.Fatalf("status = %d, want %d (%s)", w.Code, tt.status, w.Body)
			}
			if got := w.Header().Get("WWW-Authenticate"); got != tt.challenge {
				t.Errorf("WWW-Authenticate = %s, want %s", got, tt.challenge)
			}
			if tt.status == 200 {
				if seen == nil || seen.Subject != "spiffe://sigil.test/user/alice" {
					t.Errorf("claims in context = %+v", seen)
				}
			} else if seen != nil {
				t.Errorf("handler called on %d", tt.status)
			}
			if tt.status == 503 && w.Header().Get("Retry-After") == "" {
				t.Errorf("503 without Retry-After")
			}
		})
	}
}

// TestMiddlewareTLS runs the middleware behind a real mTLS server: the
// holder of the certificate gets through, the same token from a client
// with another certificate does not.
func TestMiddlewareTLS(t *testing.T) {
	e := newEnv(t)
	a, b := newTLSCert(t, "a"), newTLSCert(t, "b")
	v := e.verifier(t, e.config(t))
	srv := httptest.NewUnstartedServer(v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _ := FromContext(r.Context())
		io.WriteString(w, c.ActChain()[0])
	})))
	srv.TLS = &tls.Config{ClientAuth: tls.RequireAnyClientCert}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	tok := e.token(t, e.mint, a.Leaf)
	for _, tt := range []struct {
		name   string
		cert   tls.Certificate
		status int
	}{{"holder", a, 200}, {"thief", b, 401}} {
		t.Run(tt.name, func(t *testing.T) {
			client := srv.Client()
			tr := client.Transport.(*http.Transport).Clone()
			tr.TLSClientConfig.Certificates = []tls.Certificate{tt.cert}
			client = &http.Client{Transport: tr}
			req, _ := http.NewRequestWithContext(t.Context(), "GET", srv.URL, nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			resp, err := client.Do(req)
			if err != nil {
				t.Fatalf("GET: %v", err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.status {
				t.Fatalf("status = %d, want %d (%s)", resp.StatusCode, tt.status, body)
			}
			if tt.status == 200 && string(body) != caller {
				t.Errorf("body = %q, want the actor %q", body, caller)
			}
		})
	}
}
