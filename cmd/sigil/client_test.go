package main_test

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	"github.com/sigil-dev/sigil/client"
	"github.com/sigil-dev/sigil/verify"

	"github.com/sigil-dev/sigil/testenv"
)

// libRevocationWait bounds how long a revocation may take to reach a
// verifier following sigild's feed (the goal is under a second).
const libRevocationWait = 5 * time.Second

// libForward is the path prefix under which the orders server calls the
// payments server on the caller's behalf: /fwd/X calls payments' /X.
const libForward = "/fwd"

// TestClient runs the workload library, client.New and what a Client
// offers, against a real sigild with four swtpm TPMs (one per workload
// open at a time: a swtpm serves one connection) and SoftHSM. frontend
// calls orders, which calls payments; orders and payments are resource
// servers: a Client's ServerTLSConfig in front of verify's Middleware,
// configured by the Client's VerifyConfig.
func TestClient(t *testing.T) {
	e := startLibStack(t)
	t.Run("new-enrolls-first", e.newEnrollsFirst) // TPM 3, before the renewer uses it
	t.Run("group", func(t *testing.T) {
		t.Run("tpm3", func(t *testing.T) {
			t.Parallel()
			t.Run("renewal-under-traffic", e.renewalUnderTraffic)
			t.Run("unavailable", e.unavailable)
			t.Run("revoked-peer", e.revokedPeer) // last: disables TPM 3's device
		})
		t.Run("tokens", func(t *testing.T) {
			t.Parallel()
			t.Run("tls-configs", e.tlsConfigs)
			t.Run("delegation", e.delegation)
			t.Run("transaction-token", e.transactionToken)
			t.Run("one-fetch-for-concurrent-requests", e.oneFetch)
			t.Run("invalid-token-drops-cached", e.invalidTokenDropsCached)
			t.Run("revoke-subject", e.revokeSubject)
			t.Run("denied", e.denied)
			t.Run("plain-http-refused", e.plainHTTPRefused)
			t.Run("body-closed-on-refusal", e.bodyClosedOnRefusal)
		})
	})
}

// libStack is the dev stack with TestClient's workloads. frontend (TPM 0)
// only calls; orders (TPM 1) and payments (TPM 2) serve. TPM 3 is for the
// workloads a subtest opens and closes itself.
type libStack struct {
	*stack
	log                        *slog.Logger
	frontend, orders, payments *client.Client
	frontendMetrics            *prometheus.Registry
	ordersSrv, paymentsSrv     *libServer
	user                       string // alice's IdP token for frontend, for the whole session
}

func startLibStack(t *testing.T) *libStack {
	s := startStack(t, "4")
	e := &libStack{stack: s, log: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))}
	e.frontendMetrics = prometheus.NewPedanticRegistry()
	e.frontend = e.open(t, 0, "frontend", false, e.frontendMetrics)
	e.orders = e.open(t, 1, "orders", true, nil)
	e.payments = e.open(t, 2, "payments", true, nil)
	e.paymentsSrv = e.serve(t, e.payments, nil)
	toPayments := e.orders.HTTPClient(e.payments.ID(), "payments:charge")
	e.ordersSrv = e.serve(t, e.orders, func(w http.ResponseWriter, r *http.Request) {
		// On the caller's behalf: the Transport exchanges the token the
		// Middleware put in r's context.
		got, err := libGet(r.Context(), toPayments, e.paymentsSrv.url+strings.TrimPrefix(r.URL.Path, libForward))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		w.WriteHeader(got.status)
		io.WriteString(w, got.body)
	})
	e.user = e.userToken(t, "frontend", "orders:read orders:write payments:charge")
	return e
}

// enrollConfig enrolls name on TPM i into dir.
func (e *libStack) enrollConfig(t *testing.T, i int, name, dir string, serverAuth bool) client.EnrollConfig {
	t.Helper()
	bundle, err := os.ReadFile(e.env["SIGIL_CA_BUNDLE"])
	if err != nil {
		t.Fatal(err)
	}
	addr, eventLog := e.tpm(i)
	return client.EnrollConfig{
		Server: e.env["SIGIL_SERVER"], CABundle: bundle, TPM: addr, EventLog: eventLog,
		Identity: "spiffe://sigil.test/workload/" + name, StateDir: dir, ServerAuth: serverAuth,
		HostState: e.env["SIGIL_HOST_STATE"],
	}
}

// open enrolls name on TPM i with client.New and closes it when t ends.
func (e *libStack) open(t *testing.T, i int, name string, serverAuth bool, reg prometheus.Registerer) *client.Client {
	t.Helper()
	dir := filepath.Join(e.dir, name)
	ec := e.enrollConfig(t, i, name, dir, serverAuth)
	c, err := client.New(t.Context(), client.Config{StateDir: dir, Enroll: &ec, Log: e.log, Registerer: reg})
	if err != nil {
		t.Fatalf("client.New %s: %v", name, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// libServer is a workload serving mTLS behind verify's Middleware. It
// records the claims it verified, by path, and answers their jti; under
// libForward it calls forward instead.
type libServer struct {
	c   *client.Client
	url string

	mu   sync.Mutex
	seen map[string][]*verify.Claims
	txns map[string][]*verify.Claims // the transaction tokens, by path
}

func (e *libStack) serve(t *testing.T, c *client.Client, forward http.HandlerFunc) *libServer {
	t.Helper()
	srv := &libServer{c: c, seen: map[string][]*verify.Claims{}, txns: map[string][]*verify.Claims{}}
	v, err := c.Verifier(t.Context()) // shared with c's TLS configs; c.Close closes it
	if err != nil {
		t.Fatal(err)
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		claims, _ := verify.FromContext(r.Context())
		srv.mu.Lock()
		srv.seen[r.URL.Path] = append(srv.seen[r.URL.Path], claims)
		if txn, ok := verify.TxnFromContext(r.Context()); ok {
			srv.txns[r.URL.Path] = append(srv.txns[r.URL.Path], txn)
		}
		srv.mu.Unlock()
		if forward != nil && strings.HasPrefix(r.URL.Path, libForward+"/") {
			forward(w, r)
			return
		}
		io.WriteString(w, claims.ID)
	})
	// Not httptest: its StartTLS sets Certificates, which crypto/tls
	// prefers to GetCertificate when the client sends no SNI, as for
	// 127.0.0.1.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{
		Handler:   v.Middleware(h),
		TLSConfig: c.ServerTLSConfig(tlsconfig.AuthorizeMemberOf(c.ID().TrustDomain())),
		ErrorLog:  log.New(io.Discard, "", 0), // the refused handshakes of tls-configs
	}
	go hs.ServeTLS(l, "", "")
	t.Cleanup(func() { hs.Close() })
	srv.url = "https://" + l.Addr().String()
	return srv
}

// claims returns the claims verified for requests to path.
func (srv *libServer) claims(path string) []*verify.Claims {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	return slices.Clone(srv.seen[path])
}

// jtis returns the distinct jtis of the tokens verified for path.
func (srv *libServer) jtis(path string) []string {
	var out []string
	for _, c := range srv.claims(path) {
		if !slices.Contains(out, c.ID) {
			out = append(out, c.ID)
		}
	}
	return out
}

// awaitRevoked presents token to srv over mTLS as from, until srv refuses
// it as revoked; it fails t if that takes over libRevocationWait.
func (srv *libServer) awaitRevoked(t *testing.T, from *client.Client, token string) {
	t.Helper()
	tr := &http.Transport{TLSClientConfig: from.ClientTLSConfig(srv.c.ID())}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	testenv.WaitFor(t, libRevocationWait, fmt.Sprintf("%s to refuse the revoked token", srv.c.ID()), func() bool {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.url+"/direct", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		auth := resp.Header.Get("WWW-Authenticate")
		if resp.StatusCode == http.StatusUnauthorized && strings.Contains(auth, `error_description="token revoked"`) {
			return true
		}
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s answered %s %q, want 200 then 401 token revoked", srv.c.ID(), resp.Status, auth)
		}
		return false
	})
}

type libAnswer struct {
	status int
	body   string
	auth   string // WWW-Authenticate
}

// libGet sends GET url with hc under ctx.
func libGet(ctx context.Context, hc *http.Client, url string) (libAnswer, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return libAnswer{}, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return libAnswer{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return libAnswer{status: resp.StatusCode, body: string(body), auth: resp.Header.Get("WWW-Authenticate")}, err
}

// libMustGet is libGet expecting 200; it returns the body.
func libMustGet(t *testing.T, ctx context.Context, hc *http.Client, url string) string {
	t.Helper()
	got, err := libGet(ctx, hc, url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	if got.status != http.StatusOK {
		t.Fatalf("GET %s: %d %q %s", url, got.status, got.auth, got.body)
	}
	return got.body
}

// libThumbprint is cnf x5t#S256 for cert.
func libThumbprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// libCert is c's current certificate.
func libCert(t *testing.T, c *client.Client) *x509.Certificate {
	t.Helper()
	svid, err := c.GetX509SVID()
	if err != nil {
		t.Fatal(err)
	}
	return svid.Certificates[0]
}

// client.New enrolls first on an empty state directory when Config.Enroll
// says how, does not without it, and does not enroll again over an
// existing enrollment.
func (e *libStack) newEnrollsFirst(t *testing.T) {
	dir := t.TempDir()
	if _, err := client.New(t.Context(), client.Config{StateDir: dir}); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("New on an empty state directory without Enroll: %v, want fs.ErrNotExist", err)
	}
	ec := e.enrollConfig(t, 3, "fresh", dir, true)
	c, err := client.New(t.Context(), client.Config{StateDir: dir, Enroll: &ec, Log: e.log})
	if err != nil {
		t.Fatalf("New with Enroll: %v", err)
	}
	first := libCert(t, c)
	if c.ID().String() != ec.Identity {
		t.Errorf("ID %s, want %s", c.ID(), ec.Identity)
	}
	if !slices.Contains(first.ExtKeyUsage, x509.ExtKeyUsageServerAuth) {
		t.Error("EnrollConfig.ServerAuth: the certificate cannot serve TLS")
	}
	if st, err := client.LoadState(dir); err != nil || !st.Chain[0].Equal(first) {
		t.Errorf("the enrollment is not saved in the state directory: %v", err)
	}
	c.Close()

	other := e.enrollConfig(t, 3, "other", dir, true)
	c, err = client.New(t.Context(), client.Config{StateDir: dir, Enroll: &other, Log: e.log})
	if err != nil {
		t.Fatalf("New over an existing enrollment: %v", err)
	}
	defer c.Close()
	if got := libCert(t, c); c.ID().String() != ec.Identity || !got.Equal(first) {
		t.Errorf("New enrolled again as %s over an existing enrollment", c.ID())
	}
}

// ClientTLSConfig reaches a workload server by its SPIFFE ID, and only by
// it; the server asks for a token.
func (e *libStack) tlsConfigs(t *testing.T) {
	for _, tc := range []struct {
		name    string
		server  spiffeid.ID
		wantErr string
	}{
		{name: "right-id", server: e.orders.ID()},
		{name: "wrong-id", server: e.payments.ID(), wantErr: `unexpected ID "spiffe://sigil.test/workload/orders"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := &http.Transport{TLSClientConfig: e.frontend.ClientTLSConfig(tc.server)}
			defer tr.CloseIdleConnections()
			got, err := libGet(t.Context(), &http.Client{Transport: tr}, e.ordersSrv.url+"/tls")
			switch {
			case tc.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
			case err != nil:
				t.Fatal(err)
			case got.status != http.StatusUnauthorized || got.auth != "Bearer":
				t.Fatalf("without a token: %d %q, want 401 Bearer", got.status, got.auth)
			}
		})
	}
}

// A user's token reaches payments through frontend and orders, each
// calling with its Transport: frontend with WithSubjectToken, orders with
// the context verify's Middleware gave its handler. Scopes narrow, act
// nests, each token is bound to its caller's certificate.
func (e *libStack) delegation(t *testing.T) {
	ctx := client.WithSubjectToken(t.Context(), e.user)
	hc := e.frontend.HTTPClient(e.orders.ID(), "orders:read", "payments:charge")
	body := libMustGet(t, ctx, hc, e.ordersSrv.url+libForward+"/delegation")

	frontend, orders := e.frontend.ID().String(), e.orders.ID().String()
	checks := []struct {
		name   string
		claims []*verify.Claims
		act    []string
		scope  []string
		client *client.Client
	}{
		{"orders", e.ordersSrv.claims(libForward + "/delegation"), []string{frontend}, []string{"orders:read", "payments:charge"}, e.frontend},
		{"payments", e.paymentsSrv.claims("/delegation"), []string{orders, frontend}, []string{"payments:charge"}, e.orders},
	}
	for _, c := range checks {
		if len(c.claims) != 1 {
			t.Fatalf("%s verified %d requests, want 1", c.name, len(c.claims))
		}
		got := c.claims[0]
		if got.Subject != "alice" || !slices.Equal(got.ActChain(), c.act) || !slices.Equal(got.Scope, c.scope) ||
			got.ClientID != c.client.ID().String() || got.Confirmation != libThumbprint(libCert(t, c.client)) {
			t.Errorf("%s saw sub %q act %v scope %v client_id %s cnf %s, want alice %v %v %s bound to its certificate",
				c.name, got.Subject, got.ActChain(), got.Scope, got.ClientID, got.Confirmation, c.act, c.scope, c.client.ID())
		}
	}
	if pay := e.paymentsSrv.claims("/delegation"); len(pay) == 1 && body != pay[0].ID {
		t.Errorf("frontend got %q, not payments' answer %q", body, pay[0].ID)
	}
}

// 64 concurrent requests through one Transport with nothing cached fetch
// one token, which later requests reuse.
func (e *libStack) oneFetch(t *testing.T) {
	fetches, lookups := e.frontendCount(t, "sigil_client_token_fetches_total", "issued"), e.frontendCount(t, "sigil_client_token_lookups_total", "")
	hc := e.frontend.HTTPClient(e.orders.ID(), "orders:herd") // a scope no other subtest asks for
	url := e.ordersSrv.url + "/herd"
	start := make(chan struct{})
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			<-start
			got, err := libGet(t.Context(), hc, url)
			if err != nil || got.status != http.StatusOK {
				t.Errorf("GET: %v %d %q", err, got.status, got.auth)
			}
		})
	}
	close(start)
	wg.Wait()
	for range 3 {
		libMustGet(t, t.Context(), hc, url)
	}
	if n, jtis := len(e.ordersSrv.claims("/herd")), e.ordersSrv.jtis("/herd"); n != 67 || len(jtis) != 1 {
		t.Fatalf("orders verified %d requests with %d distinct tokens, want 67 with 1", n, len(jtis))
	}
	fetches = e.frontendCount(t, "sigil_client_token_fetches_total", "issued") - fetches
	lookups = e.frontendCount(t, "sigil_client_token_lookups_total", "") - lookups
	if fetches != 1 || lookups != 67 {
		t.Errorf("frontend's metrics: %v token fetches for %v lookups; want 1 for 67", fetches, lookups)
	}
}

// frontendCount is the value of frontend's counter name{result}.
func (e *libStack) frontendCount(t *testing.T, name, result string) float64 {
	t.Helper()
	families, err := e.frontendMetrics.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			r := ""
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" {
					r = l.GetValue()
				}
			}
			if f.GetName() == name && r == result {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// A 401 invalid_token answer drops the cached token: the request that got
// it is not retried, the next one fetches a new token.
func (e *libStack) invalidTokenDropsCached(t *testing.T) {
	hc := e.frontend.HTTPClient(e.orders.ID(), "orders:read")
	url := e.ordersSrv.url + "/drop"
	first := libMustGet(t, t.Context(), hc, url)
	if again := libMustGet(t, t.Context(), hc, url); again != first {
		t.Fatalf("a second request used token %s, not the cached %s", again, first)
	}
	token := e.ordersSrv.claims("/drop")[0].Token()
	if err := e.frontend.Workload().Revoke(t.Context(), token); err != nil {
		t.Fatal(err)
	}
	e.ordersSrv.awaitRevoked(t, e.frontend, token)

	got, err := libGet(t.Context(), hc, url)
	if err != nil || got.status != http.StatusUnauthorized || !strings.Contains(got.auth, `error="invalid_token"`) {
		t.Fatalf("request with the revoked cached token: %v %d %q, want 401 invalid_token", err, got.status, got.auth)
	}
	next := libMustGet(t, t.Context(), hc, url)
	if next == first {
		t.Fatalf("the request after a 401 invalid_token used the revoked token %s again", first)
	}
}

// RevokeSubject ends a user's session: the tokens exchanged from the
// user's token, at every hop, are refused downstream, and frontend, whose
// cache it empties for that user, cannot exchange the token again.
// Another session of the same user goes on.
func (e *libStack) revokeSubject(t *testing.T) {
	user := e.userToken(t, "frontend", "orders:read payments:charge")
	hc := e.frontend.HTTPClient(e.orders.ID(), "orders:read", "payments:charge")
	ctx := client.WithSubjectToken(t.Context(), user)
	libMustGet(t, ctx, hc, e.ordersSrv.url+libForward+"/revoke")
	toOrders := e.ordersSrv.claims(libForward + "/revoke")[0].Token()
	toPayments := e.paymentsSrv.claims("/revoke")[0].Token()

	if err := e.frontend.RevokeSubject(t.Context(), user); err != nil {
		t.Fatalf("RevokeSubject: %v", err)
	}
	e.ordersSrv.awaitRevoked(t, e.frontend, toOrders)
	e.paymentsSrv.awaitRevoked(t, e.orders, toPayments)

	_, err := libGet(ctx, hc, e.ordersSrv.url+libForward+"/revoke")
	var se *client.ServerError
	if !errors.Is(err, client.ErrDenied) || !errors.As(err, &se) || se.Code != "invalid_request" || !strings.Contains(se.Description, "revoked") {
		t.Fatalf("request on behalf of the revoked user token: %v, want ErrDenied, invalid_request: revoked", err)
	}
	if n := len(e.ordersSrv.claims(libForward + "/revoke")); n != 1 {
		t.Errorf("orders verified %d requests, want only the one before the revocation", n)
	}
	// The session of TestClient's user token, with its cached tokens at
	// both hops, is another one.
	libMustGet(t, client.WithSubjectToken(t.Context(), e.user), hc, e.ordersSrv.url+libForward+"/other-session")
}

// Refusals by the policy or the token rules are client.ErrDenied, and no
// request reaches the server.
func (e *libStack) denied(t *testing.T) {
	for _, tc := range []struct {
		name     string
		server   string
		scope    string
		subject  string
		wantCode string
	}{
		{name: "audience-outside-trust-domain", server: "spiffe://elsewhere.test/workload/orders", wantCode: "invalid_target"},
		{name: "widened-scope", server: e.orders.ID().String(), scope: "orders:admin", subject: e.user, wantCode: "invalid_scope"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			if tc.subject != "" {
				ctx = client.WithSubjectToken(ctx, tc.subject)
			}
			path := "/denied-" + tc.name
			_, err := libGet(ctx, e.frontend.HTTPClient(spiffeid.RequireFromString(tc.server), tc.scope), e.ordersSrv.url+path)
			var se *client.ServerError
			if !errors.Is(err, client.ErrDenied) || errors.Is(err, client.ErrUnavailable) || !errors.As(err, &se) || se.Code != tc.wantCode {
				t.Fatalf("err %v, want ErrDenied with %s", err, tc.wantCode)
			}
			if n := len(e.ordersSrv.claims(path)); n != 0 {
				t.Errorf("the server got %d requests", n)
			}
		})
	}
}

// A Transport sends nothing, let alone a token, to a URL that is not
// https.
func (e *libStack) plainHTTPRefused(t *testing.T) {
	var got atomic.Int32
	plain := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { got.Add(1) }))
	defer plain.Close()
	_, err := libGet(t.Context(), e.frontend.HTTPClient(e.orders.ID()), plain.URL+"/plain")
	if err == nil || !strings.Contains(err.Error(), "not https") {
		t.Fatalf("err %v, want a refusal of http", err)
	}
	if got.Load() != 0 {
		t.Fatal("the request went out over http")
	}
}

// A Transport closes the request body when it sends nothing, as
// http.RoundTripper must: http.Client leaves that to it.
func (e *libStack) bodyClosedOnRefusal(t *testing.T) {
	for _, tc := range []struct {
		name, server, url string
	}{
		{name: "plain-http", server: e.orders.ID().String(), url: "http://127.0.0.1:1/body"},
		{name: "token-denied", server: "spiffe://elsewhere.test/workload/orders", url: e.ordersSrv.url + "/body"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := &libBody{Reader: strings.NewReader("order")}
			req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, tc.url, body)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := e.frontend.HTTPClient(spiffeid.RequireFromString(tc.server)).Do(req); err == nil {
				t.Fatal("the request went through")
			}
			if !body.closed.Load() {
				t.Error("the request body was left open")
			}
		})
	}
}

// libBody is a request body that records whether it was closed.
type libBody struct {
	io.Reader
	closed atomic.Bool
}

func (b *libBody) Close() error {
	b.closed.Store(true)
	return nil
}

// The renewal loop renews on its own after Config.RenewAfter of the
// certificate's lifetime; with Renew besides, requests keep succeeding
// throughout and, after each renewal, carry tokens bound to the new
// certificate.
func (e *libStack) renewalUnderTraffic(t *testing.T) {
	dir := filepath.Join(e.dir, "renewer")
	st, err := client.Enroll(t.Context(), e.enrollConfig(t, 3, "renewer", dir, false))
	if err != nil {
		t.Fatal(err)
	}
	// Due about 8 s from now, ±10% of the time since NotBefore, which the
	// CA backdates by a minute: between 1 and 15 s from now.
	leaf := st.Chain[0]
	after := float64(time.Since(leaf.NotBefore)+8*time.Second) / float64(leaf.NotAfter.Sub(leaf.NotBefore))
	c, err := client.New(t.Context(), client.Config{StateDir: dir, RenewAfter: after, Log: e.log})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	hc := c.HTTPClient(e.orders.ID(), "orders:read")
	url := e.ordersSrv.url + "/renewal"
	var sent, failed atomic.Int32
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				case <-time.After(10 * time.Millisecond):
				}
				sent.Add(1)
				if got, err := libGet(t.Context(), hc, url); err != nil || got.status != http.StatusOK {
					failed.Add(1)
					t.Errorf("request during renewals: %v %d %q", err, got.status, got.auth)
				}
			}
		})
	}
	defer func() {
		close(stop)
		wg.Wait()
		if sent.Load() < 20 || failed.Load() != 0 {
			t.Errorf("%d of %d requests failed during renewals", failed.Load(), sent.Load())
		}
	}()

	mine := []string{leaf.SerialNumber.String()}
	e.awaitBound(t, "/renewal", libCert(t, c)) // leaf's, unless the loop was quicker
	renewed, err := c.Renew(t.Context())
	if err != nil {
		t.Fatalf("Renew: %v", err)
	}
	mine = append(mine, renewed.Chain[0].SerialNumber.String())
	if libCert(t, c).Equal(leaf) {
		t.Fatal("the Client serves the certificate from before Renew")
	}
	e.awaitBound(t, "/renewal", libCert(t, c))

	testenv.WaitFor(t, 30*time.Second, "the renewal loop to renew", func() bool {
		return !slices.Contains(mine, libCert(t, c).SerialNumber.String())
	})
	e.awaitBound(t, "/renewal", libCert(t, c))
}

// awaitBound waits until orders verifies, for path, a token bound to cert.
func (e *libStack) awaitBound(t *testing.T, path string, cert *x509.Certificate) {
	t.Helper()
	want := libThumbprint(cert)
	testenv.WaitFor(t, 5*time.Second, fmt.Sprintf("a token bound to certificate %x to reach orders", cert.SerialNumber), func() bool {
		return slices.ContainsFunc(e.ordersSrv.claims(path), func(c *verify.Claims) bool { return c.Confirmation == want })
	})
}

// With sigild unreachable, what needs it fails with client.ErrUnavailable,
// and nothing reaches the workload server.
func (e *libStack) unavailable(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "renewer")
	copyDir(t, filepath.Join(e.dir, "renewer"), dir)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "https://" + l.Addr().String()
	l.Close()
	libEditState(t, dir, func(st map[string]any) { st["server"] = closed })

	c, err := client.New(t.Context(), client.Config{StateDir: dir, Log: e.log})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = libGet(t.Context(), c.HTTPClient(e.orders.ID(), "orders:read"), e.ordersSrv.url+"/unavailable")
	if !errors.Is(err, client.ErrUnavailable) || errors.Is(err, client.ErrDenied) {
		t.Errorf("token with sigild unreachable: %v, want ErrUnavailable", err)
	}
	if n := len(e.ordersSrv.claims("/unavailable")); n != 0 {
		t.Errorf("orders got %d requests", n)
	}
	if _, err := c.Renew(t.Context()); !errors.Is(err, client.ErrUnavailable) {
		t.Errorf("Renew with sigild unreachable: %v, want ErrUnavailable", err)
	}
	if _, err := c.VerifyConfig(t.Context()); !errors.Is(err, client.ErrUnavailable) {
		t.Errorf("VerifyConfig with sigild unreachable: %v, want ErrUnavailable", err)
	}
}

// libEditState rewrites dir's state.json.
func libEditState(t *testing.T, dir string, edit func(map[string]any)) {
	t.Helper()
	path := filepath.Join(dir, client.StateFile)
	var st map[string]any
	if err := json.Unmarshal(readFileT(t, path), &st); err != nil {
		t.Fatal(err)
	}
	edit(st)
	out, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, string(out))
}

// transactionToken: frontend gets a transaction token for alice's request
// and calls orders with it; orders' Middleware verifies it, and its
// Transport carries it on to payments, which sees the same transaction.
func (e *libStack) transactionToken(t *testing.T) {
	r, err := e.frontend.TxnToken(t.Context(), client.TxnRequest{
		SubjectToken: e.user, Scope: []string{"orders:read"},
		RequestDetails: map[string]any{"action": "checkout"},
	})
	if err != nil {
		t.Fatalf("TxnToken: %v", err)
	}
	ctx := client.WithTxnToken(client.WithSubjectToken(t.Context(), e.user), r.AccessToken)
	hc := e.frontend.HTTPClient(e.orders.ID(), "orders:read", "payments:charge")
	libMustGet(t, ctx, hc, e.ordersSrv.url+libForward+"/txn")
	e.ordersSrv.mu.Lock()
	atOrders := slices.Clone(e.ordersSrv.txns[libForward+"/txn"])
	e.ordersSrv.mu.Unlock()
	e.paymentsSrv.mu.Lock()
	atPayments := slices.Clone(e.paymentsSrv.txns["/txn"])
	e.paymentsSrv.mu.Unlock()
	if len(atOrders) != 1 || len(atPayments) != 1 {
		t.Fatalf("orders verified %d transaction tokens, payments %d; want one each", len(atOrders), len(atPayments))
	}
	for name, got := range map[string]*verify.Claims{"orders": atOrders[0], "payments": atPayments[0]} {
		if got.Txn == "" || got.Txn != atOrders[0].Txn || got.Subject != "alice" || got.RequestingWorkload != e.frontend.ID().String() ||
			!slices.Equal(got.Scope, []string{"orders:read"}) || got.TxnContext["action"] != "checkout" {
			t.Errorf("%s saw transaction %q sub %q req_wl %q scope %v tctx %v", name, got.Txn, got.Subject, got.RequestingWorkload, got.Scope, got.TxnContext)
		}
	}
	// An access token is no transaction token.
	bad := client.WithTxnToken(client.WithSubjectToken(t.Context(), e.user), e.user)
	if got, err := libGet(bad, hc, e.ordersSrv.url+"/txn-bad"); err != nil || got.status != http.StatusUnauthorized || !strings.Contains(got.auth, "Txn-Token: wrong token type") {
		t.Errorf("an access token in Txn-Token: %+v, %v; want 401 naming the wrong type", got, err)
	}
}
