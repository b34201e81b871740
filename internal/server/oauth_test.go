package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sigil-dev/sigil/api"
	"github.com/sigil-dev/sigil/internal/tokens"
	"github.com/sigil-dev/sigil/internal/tokens/tokenstest"
	"github.com/sigil-dev/sigil/testenv"
	"github.com/sigil-dev/sigil/token"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// oauthServer is sigild's API with the token service, over mutual TLS
// (HTTP/2, as sigild negotiates it).
type oauthServer struct {
	*tokenstest.Env
	url      string
	registry *prometheus.Registry
}

func newOAuthServer(t *testing.T, opts ...func(*tokens.Config)) *oauthServer {
	t.Helper()
	e := tokenstest.New(t, opts...)
	return serve(t, e, e.Service)
}

func serve(t *testing.T, e *tokenstest.Env, svc *tokens.Service, opts ...func(*Server)) *oauthServer {
	t.Helper()
	reg := prometheus.NewRegistry()
	s := &Server{Tokens: svc, Log: tokenstest.Logger(t), Registry: reg}
	for _, opt := range opts {
		opt(s)
	}
	srv := httptest.NewUnstartedServer(s.Handler())
	srv.TLS = e.ServerTLS(t)
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return &oauthServer{Env: e, url: srv.URL, registry: reg}
}

// client is an HTTP client presenting w's certificate (none if nil).
func (o *oauthServer) client(w *tokenstest.Workload) *http.Client {
	return &http.Client{
		Transport: &http.Transport{TLSClientConfig: o.ClientTLS(w), ForceAttemptHTTP2: true},
		Timeout:   10 * time.Second,
	}
}

// answer is a decoded JSON response.
type answer struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

func (a answer) str(name string) string { s, _ := a.body[name].(string); return s }

func (o *oauthServer) post(t *testing.T, c *http.Client, path string, f url.Values) answer {
	t.Helper()
	resp, err := c.Post(o.url+path, "application/x-www-form-urlencoded", strings.NewReader(f.Encode()))
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	return read(t, resp)
}

func read(t *testing.T, resp *http.Response) answer {
	t.Helper()
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	a := answer{status: resp.StatusCode, header: resp.Header, raw: string(data)}
	if len(data) > 0 {
		if err := json.Unmarshal(data, &a.body); err != nil {
			t.Fatalf("body %q: %v", data, err)
		}
	}
	return a
}

// token gets a token as c, failing the test unless it succeeds.
func (o *oauthServer) token(t *testing.T, c *http.Client, f url.Values) answer {
	t.Helper()
	a := o.post(t, c, tokens.PathToken, f)
	if a.status != http.StatusOK || a.str("access_token") == "" {
		t.Fatalf("token: %d %s", a.status, a.raw)
	}
	return a
}

func ccForm(audience string, kv ...string) url.Values {
	f := url.Values{"grant_type": {tokens.GrantClientCredentials}, "audience": {audience}}
	for i := 0; i+1 < len(kv); i += 2 {
		f.Add(kv[i], kv[i+1])
	}
	return f
}

func exchangeForm(subject, audience string, kv ...string) url.Values {
	f := url.Values{
		"grant_type": {tokens.GrantTokenExchange}, "subject_token": {subject},
		"subject_token_type": {api.TokenTypeAccessToken}, "audience": {audience},
	}
	for i := 0; i+1 < len(kv); i += 2 {
		f.Add(kv[i], kv[i+1])
	}
	return f
}

// The whole flow over mTLS: a token, an exchange, introspection with cnf
// and act, and a revocation that reaches the feed and deactivates the
// derived token.
func TestOAuthFlow(t *testing.T) {
	t.Parallel()
	o := newOAuthServer(t)
	a, b, c, rs := o.Workload(t, "a"), o.Workload(t, "b"), o.Workload(t, "c"), o.Workload(t, "rs")
	feed := o.subscribe(t, o.client(rs), "")
	ab := o.token(t, o.client(a), ccForm(b.ID, "scope", "read write"))
	if ab.header.Get("Cache-Control") != "no-store" || ab.header.Get("Pragma") != "no-cache" || ab.str("token_type") != "Bearer" ||
		ab.header.Get("Content-Type") != "application/json" || ab.header.Get("Content-Length") != strconv.Itoa(len(ab.raw)) || !strings.HasSuffix(ab.raw, "}\n") {
		t.Errorf("token answer headers %v, body %q", ab.header, ab.raw)
	}
	bc := o.token(t, o.client(b), exchangeForm(ab.str("access_token"), c.ID, "scope", "read"))
	if bc.str("issued_token_type") != api.TokenTypeAccessToken || bc.str("scope") != "read" || bc.body["expires_in"].(float64) <= 0 {
		t.Errorf("exchange answer %s", bc.raw)
	}
	in := o.post(t, o.client(c), tokens.PathIntrospect, url.Values{"token": {bc.str("access_token")}, "token_type_hint": {"access_token"}})
	cnf, _ := in.body["cnf"].(map[string]any)
	act, _ := in.body["act"].(map[string]any)
	if in.status != http.StatusOK || in.body["active"] != true || cnf["x5t#S256"] != token.Thumbprint(b.Cert.Raw) || act["sub"] != b.ID || in.str("sub") != a.ID {
		t.Fatalf("introspection: %d %s", in.status, in.raw)
	}
	start := time.Now()
	if r := o.post(t, o.client(a), tokens.PathRevoke, url.Values{"token": {ab.str("access_token")}}); r.status != http.StatusOK {
		t.Fatalf("revoke: %d %s", r.status, r.raw)
	}
	var revoked []string
	var ids []string
	for range 2 {
		ev := feed.next(t)
		ids = append(ids, ev.id)
		revoked = append(revoked, o.setJTI(t, ev.data))
	}
	t.Logf("revocations reached the subscriber %v after the request", time.Since(start))
	jtis := []string{jtiOf(t, ab.str("access_token")), jtiOf(t, bc.str("access_token"))}
	slices.Sort(revoked)
	slices.Sort(jtis)
	if !slices.Equal(revoked, jtis) || ids[0] == ids[1] {
		t.Errorf("feed: ids %v revoked %v, want %v", ids, revoked, jtis)
	}
	in = o.post(t, o.client(c), tokens.PathIntrospect, url.Values{"token": {bc.str("access_token")}})
	if in.raw != `{"active":false}`+"\n" {
		t.Errorf("introspection after revocation: %s", in.raw)
	}
}

// The revocation feed resumes after Last-Event-ID.
func TestOAuthFeedResumes(t *testing.T) {
	t.Parallel()
	o := newOAuthServer(t)
	a, b, rs := o.Workload(t, "a"), o.Workload(t, "b"), o.Workload(t, "rs")
	var jtis []string
	for range 3 {
		tok := o.token(t, o.client(a), ccForm(b.ID)).str("access_token")
		jtis = append(jtis, jtiOf(t, tok))
		if r := o.post(t, o.client(b), tokens.PathRevoke, url.Values{"token": {tok}}); r.status != http.StatusOK {
			t.Fatalf("revoke: %d %s", r.status, r.raw)
		}
	}
	seq, err := o.Store.LatestRevocationSeq(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	epoch, err := o.Store.Epoch(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	feed := o.subscribe(t, o.client(rs), tokens.EventID(epoch, seq-2))
	for i, want := range jtis[1:] {
		ev := feed.next(t)
		if id := tokens.EventID(epoch, seq-1+uint64(i)); ev.id != id || o.setJTI(t, ev.data) != want {
			t.Errorf("resumed event %s for %s, want %s for %s", ev.id, o.setJTI(t, ev.data), id, want)
		}
	}
}

// A resume point ahead of the feed's head, or of another epoch, is
// answered 409 so that the verifier resynchronises from 0; a stream names
// the feed's head.
func TestOAuthFeedRefusesResumeOffTheFeed(t *testing.T) {
	t.Parallel()
	o := newOAuthServer(t)
	rs := o.Workload(t, "rs")
	for _, id := range []string{"99999999", tokens.EventID("another-epoch", 1)} {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, o.url+tokens.PathRevocations, nil)
		req.Header.Set("Last-Event-ID", id)
		resp, err := o.client(rs).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if a := read(t, resp); a.status != http.StatusConflict || a.str("error") != tokens.InvalidRequest {
			t.Errorf("Last-Event-ID %s: %d %s, want 409 invalid_request", id, a.status, a.raw)
		}
	}
	epoch, err := o.Store.Epoch(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, o.url+tokens.PathRevocations, nil)
	req.Header.Set("Last-Event-ID", "0")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	resp, err := o.client(rs).Do(req.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if got := resp.Header.Get(FeedHeadHeader); resp.StatusCode != http.StatusOK || got != tokens.EventID(epoch, 0) {
		t.Errorf("Last-Event-ID 0: %d, head %q; want 200, head %q", resp.StatusCode, got, tokens.EventID(epoch, 0))
	}
}

// The client is its certificate: without one, or with a revoked one,
// every endpoint answers 401 invalid_client; one from another CA does
// not get through TLS.
func TestOAuthClientAuthentication(t *testing.T) {
	t.Parallel()
	o := newOAuthServer(t)
	b, gone := o.Workload(t, "b"), o.Workload(t, "gone")
	o.RevokeCertificate(t, gone)
	for _, w := range []*tokenstest.Workload{nil, gone} {
		c := o.client(w)
		for path, f := range map[string]url.Values{
			tokens.PathToken: ccForm(b.ID), tokens.PathIntrospect: {"token": {"x"}}, tokens.PathRevoke: {"token": {"x"}},
		} {
			if a := o.post(t, c, path, f); a.status != http.StatusUnauthorized || a.str("error") != tokens.InvalidClient {
				t.Errorf("%s with certificate %v: %d %s, want 401 invalid_client", path, w != nil, a.status, a.raw)
			}
		}
		resp, err := c.Get(o.url + tokens.PathRevocations)
		if err != nil {
			t.Fatal(err)
		}
		if a := read(t, resp); a.status != http.StatusUnauthorized {
			t.Errorf("feed: %d %s, want 401", a.status, a.raw)
		}
	}
	other, err := tokenstest.NewCA(newECKey(t), newECKey(t))
	if err != nil {
		t.Fatal(err)
	}
	foreign := tokenstest.Issue(t, other, b.ID, o.Evidence())
	_, err = o.client(foreign).Post(o.url+tokens.PathToken, "application/x-www-form-urlencoded", strings.NewReader(ccForm(b.ID).Encode()))
	if err == nil {
		t.Error("a certificate of another CA got through the TLS handshake")
	}
}

// Bodies: the size limit, the media type, and the token parameter.
func TestOAuthRequestBodies(t *testing.T) {
	t.Parallel()
	o := newOAuthServer(t)
	a := o.Workload(t, "a")
	c := o.client(a)
	tests := []struct {
		name        string
		path        string
		contentType string
		body        string
		status      int
		code        string
	}{
		{"too large", tokens.PathToken, "application/x-www-form-urlencoded", "grant_type=client_credentials&scope=" + strings.Repeat("a", MaxOAuthForm), http.StatusRequestEntityTooLarge, tokens.InvalidRequest},
		{"JSON", tokens.PathToken, "application/json", `{"grant_type":"client_credentials"}`, http.StatusBadRequest, tokens.InvalidRequest},
		{"no token", tokens.PathIntrospect, "application/x-www-form-urlencoded", "token_type_hint=access_token", http.StatusBadRequest, tokens.InvalidRequest},
		{"two tokens", tokens.PathRevoke, "application/x-www-form-urlencoded", "token=a&token=b", http.StatusBadRequest, tokens.InvalidRequest},
		{"malformed form", tokens.PathToken, "application/x-www-form-urlencoded", "grant_type=%zz", http.StatusBadRequest, tokens.InvalidRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := c.Post(o.url+tt.path, tt.contentType, strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			if a := read(t, resp); a.status != tt.status || a.str("error") != tt.code || a.header.Get("Cache-Control") != "no-store" {
				t.Errorf("got %d %s %v, want %d %s", a.status, a.raw, a.header, tt.status, tt.code)
			}
		})
	}
	resp, err := c.Get(o.url + tokens.PathToken)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Body.Close(); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET %s = %d, want 405", tokens.PathToken, resp.StatusCode)
	}
}

// The attacks of the issue over HTTP: the OAuth code and status of each.
func TestOAuthTokenAttacks(t *testing.T) {
	t.Parallel()
	o := newOAuthServer(t)
	a, b, c, d := o.Workload(t, "a"), o.Workload(t, "b"), o.Workload(t, "c"), o.Workload(t, "d")
	ab := o.token(t, o.client(a), ccForm(b.ID, "scope", "read")).str("access_token")
	bc := o.token(t, o.client(b), exchangeForm(ab, c.ID)).str("access_token")
	cd := o.token(t, o.client(c), exchangeForm(bc, d.ID)).str("access_token")
	revoked := o.token(t, o.client(a), ccForm(b.ID)).str("access_token")
	if r := o.post(t, o.client(a), tokens.PathRevoke, url.Values{"token": {revoked}}); r.status != http.StatusOK {
		t.Fatal(r.raw)
	}
	tests := []struct {
		name   string
		caller *tokenstest.Workload
		form   url.Values
		code   string
	}{
		{"missing subject_token", b, url.Values{"grant_type": {tokens.GrantTokenExchange}, "audience": {c.ID}}, tokens.InvalidRequest},
		{"garbage subject_token", b, exchangeForm("garbage.garbage.garbage", c.ID), tokens.InvalidRequest},
		{"subject token for another audience", c, exchangeForm(ab, d.ID), tokens.InvalidRequest},
		{"revoked subject token", b, exchangeForm(revoked, c.ID), tokens.InvalidRequest},
		{"scope widening", b, exchangeForm(ab, c.ID, "scope", "read write"), tokens.InvalidScope},
		{"audience not permitted", b, exchangeForm(ab, "https://evil.example"), tokens.InvalidTarget},
		{"act deeper than the limit", d, exchangeForm(cd, a.ID), tokens.InvalidRequest},
		{"unsupported grant", b, url.Values{"grant_type": {"password"}}, tokens.UnsupportedGrantType},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := o.post(t, o.client(tt.caller), tokens.PathToken, tt.form)
			if r.status != http.StatusBadRequest || r.str("error") != tt.code || r.str("error_description") == "" || r.str("access_token") != "" {
				t.Errorf("got %d %s, want 400 %s", r.status, r.raw, tt.code)
			}
		})
	}
}

// 64 concurrent identical exchanges over keep-alive connections: all
// succeed with distinct jtis, each recorded and audited.
func TestOAuthConcurrentExchanges(t *testing.T) {
	t.Parallel()
	o := newOAuthServer(t)
	a, b, c := o.Workload(t, "a"), o.Workload(t, "b"), o.Workload(t, "c")
	ab := o.token(t, o.client(a), ccForm(b.ID)).str("access_token")
	client := o.client(b)
	const n = 64
	jtis := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			resp, err := client.Post(o.url+tokens.PathToken, "application/x-www-form-urlencoded", strings.NewReader(exchangeForm(ab, c.ID).Encode()))
			if err != nil {
				t.Error(err)
				return
			}
			var body struct {
				AccessToken string `json:"access_token"`
			}
			err = json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || err != nil {
				t.Errorf("exchange %d: %d %v", i, resp.StatusCode, err)
				return
			}
			jtis[i] = jtiOf(t, body.AccessToken)
		})
	}
	wg.Wait()
	slices.Sort(jtis)
	if len(slices.Compact(slices.Clone(jtis))) != n || jtis[0] == "" {
		t.Fatalf("jtis not distinct: %v", jtis)
	}
	for _, jti := range jtis {
		if rec, err := o.Store.Token(t.Context(), jti); err != nil || rec.ParentJTI != jtiOf(t, ab) {
			t.Errorf("record of %s: %+v %v", jti, rec, err)
		}
		if _, err := o.Store.AuditIndex(t.Context(), "jti:"+jti); err != nil {
			t.Errorf("audit entry of %s: %v", jti, err)
		}
	}
}

// Fail closed: a token that cannot be recorded is not returned, the
// answer is 503 with Retry-After, and the refusal is counted.
func TestOAuthNotRecorded(t *testing.T) {
	t.Parallel()
	e := tokenstest.New(t)
	cfg := e.Config
	cfg.Store = brokenLog{e.Store}
	o := serve(t, e, e.Start(t, cfg))
	a, b := o.Workload(t, "a"), o.Workload(t, "b")
	r := o.post(t, o.client(a), tokens.PathToken, ccForm(b.ID))
	if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" || r.str("error") != "temporarily_unavailable" || strings.Contains(r.raw, "access_token") {
		t.Errorf("got %d %v %s, want 503 with Retry-After and no token", r.status, r.header, r.raw)
	}
	if n := counter(t, o.registry, "sigil_unrecorded_operations_total"); n != 1 {
		t.Errorf("unrecorded operations counted: %v, want 1", n)
	}
}

// The RFC 8414 metadata names every endpoint; the JWKS at jwks_uri
// verifies our tokens with a JOSE library other than go-jose.
func TestOAuthMetadata(t *testing.T) {
	t.Parallel()
	o := newOAuthServer(t)
	a, b := o.Workload(t, "a"), o.Workload(t, "b")
	resp, err := o.client(nil).Get(o.url + tokens.PathMetadata)
	if err != nil {
		t.Fatal(err)
	}
	m := read(t, resp)
	want := map[string]any{
		"issuer": tokenstest.Issuer, "token_endpoint": tokenstest.Issuer + "/oauth2/token",
		"introspection_endpoint": tokenstest.Issuer + "/oauth2/introspect", "revocation_endpoint": tokenstest.Issuer + "/oauth2/revoke",
		"jwks_uri": tokenstest.Issuer + "/jwks.json", "tls_client_certificate_bound_access_tokens": true,
	}
	for k, v := range want {
		if m.body[k] != v {
			t.Errorf("%s = %v, want %v", k, m.body[k], v)
		}
	}
	for k, v := range map[string]string{
		"grant_types_supported": tokens.GrantTokenExchange, "token_endpoint_auth_methods_supported": "tls_client_auth",
		"sigil_token_types_supported": api.TokenTypeTxnToken,
	} {
		if l, _ := m.body[k].([]any); !slices.Contains(l, any(v)) {
			t.Errorf("%s = %v, want it to list %s", k, m.body[k], v)
		}
	}
	resp, err = o.client(nil).Get(o.url + tokens.PathJWKS)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil || len(set.Keys) != 1 {
		t.Fatalf("JWKS: %v, %d keys", err, len(set.Keys))
	}
	tok := o.token(t, o.client(a), ccForm(b.ID)).str("access_token")
	parsed, err := jwt.Parse(tok, func(tk *jwt.Token) (any, error) {
		if keys := set.Key(fmt.Sprint(tk.Header["kid"])); len(keys) == 1 {
			return keys[0].Key, nil
		}
		return nil, errors.New("unknown kid")
	}, jwt.WithValidMethods([]string{"ES256"}), jwt.WithAudience(b.ID), jwt.WithIssuer(tokenstest.Issuer))
	if err != nil || !parsed.Valid || parsed.Header["typ"] != "at+jwt" {
		t.Errorf("golang-jwt: %v (header %v)", err, parsed.Header)
	}
}

// An idle feed stays up past the write timeout: over HTTP/2 a write
// deadline left set resets the stream even with nothing to write. The
// keep-alive comes after three write timeouts without a write.
func TestOAuthFeedIdle(t *testing.T) {
	t.Parallel()
	e := tokenstest.New(t)
	o := serve(t, e, e.Service, func(s *Server) { s.FeedHeartbeat, s.FeedWriteTimeout = 1500*time.Millisecond, 500*time.Millisecond })
	a, b, rs := o.Workload(t, "a"), o.Workload(t, "b"), o.Workload(t, "rs")
	feed := o.subscribe(t, o.client(rs), "")
	feed.keepAlive(t, 10*time.Second)
	tok := o.token(t, o.client(a), ccForm(b.ID)).str("access_token")
	if r := o.post(t, o.client(b), tokens.PathRevoke, url.Values{"token": {tok}}); r.status != http.StatusOK {
		t.Fatalf("revoke: %d %s", r.status, r.raw)
	}
	if got := o.setJTI(t, feed.next(t).data); got != jtiOf(t, tok) {
		t.Errorf("event for %s, want %s", got, jtiOf(t, tok))
	}
}

// formMediaType answers as mime.ParseMediaType did before its fast path.
func TestFormMediaType(t *testing.T) {
	t.Parallel()
	for ct, want := range map[string]bool{
		"application/x-www-form-urlencoded":                true,
		"application/x-www-form-urlencoded; charset=utf-8": true,
		"Application/X-WWW-Form-Urlencoded":                true,
		"application/x-www-form-urlencodedx":               false,
		"application/x-www-form-urlencoded; charset":       false,
		"application/json":                                 false,
		"":                                                 false,
	} {
		if got := formMediaType(ct); got != want {
			t.Errorf("formMediaType(%q) = %v, want %v", ct, got, want)
		}
	}
}
