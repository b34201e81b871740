package ssf_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sigil-dev/sigil/internal/device"
	"github.com/sigil-dev/sigil/internal/ssf"
	"github.com/sigil-dev/sigil/internal/tokens"
	"github.com/sigil-dev/sigil/internal/tokens/tokenstest"
	"github.com/sigil-dev/sigil/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// audience is the transmitter's: the dev policy permits tokens for it
// (testenv/policy/ssf.cedar).
const audience = "spiffe://sigil.test/sigild/ssf"

// fixture is a token service, a transmitter over its store served over
// TLS as sigild serves it, two configured receivers (siem, with a push
// endpoint, and other), a workload that is none (stranger) and a push
// receiver.
type fixture struct {
	env      *tokenstest.Env
	tx       *ssf.Transmitter
	srv      *httptest.Server
	siem     *tokenstest.Workload
	other    *tokenstest.Workload
	stranger *tokenstest.Workload
	push     *pushReceiver
	cfg      ssf.Config
	stop     func()               // stops tx
	reg      *prometheus.Registry // tx's metrics
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	return newFixtureOn(t, tokenstest.New(t))
}

// newFixtureOn is newFixture on the token service env.
func newFixtureOn(t *testing.T, env *tokenstest.Env) *fixture {
	t.Helper()
	f := &fixture{env: env, push: newPushReceiver(t)}
	f.siem, f.other, f.stranger = f.env.Workload(t, "siem"), f.env.Workload(t, "other"), f.env.Workload(t, "stranger")
	f.cfg = ssf.Config{
		Issuer: tokenstest.Issuer, Audience: audience,
		Receivers: []ssf.Receiver{{ID: f.siem.ID, PushEndpoints: []string{f.push.srv.URL + "/events"}}, {ID: f.other.ID}},
		Keys:      f.env.Keys, Auth: f.env.Service, Store: f.env.Store, PushClient: f.push.srv.Client(),
		Log: tokenstest.Logger(t), PollInterval: 20 * time.Millisecond, LongPoll: 5 * time.Second,
		PushBackoff: 10 * time.Millisecond, MaxPushBackoff: 50 * time.Millisecond,
	}
	f.reg = prometheus.NewRegistry()
	first := f.cfg
	first.Registerer = f.reg
	f.tx, f.stop = f.start(t, first)
	mux := http.NewServeMux()
	f.tx.Routes(mux, nil)
	mux.HandleFunc("GET /jwks.json", func(w http.ResponseWriter, _ *http.Request) {
		jwks, _ := f.env.Keys.JWKS()
		w.Header().Set("Content-Type", "application/json")
		w.Write(jwks)
	})
	f.srv = httptest.NewUnstartedServer(mux)
	f.srv.TLS = f.env.ServerTLS(t)
	f.srv.StartTLS()
	t.Cleanup(f.srv.Close)
	return f
}

// start makes a transmitter of c and runs it until the test ends or stop
// is called: a restarted sigild.
func (f *fixture) start(t *testing.T, c ssf.Config) (tx *ssf.Transmitter, stop func()) {
	t.Helper()
	tx, err := ssf.New(c)
	if err != nil {
		t.Fatalf("ssf.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = tx.Run(ctx) })
	stop = sync.OnceFunc(func() { cancel(); wg.Wait() })
	t.Cleanup(stop)
	return tx, stop
}

// token is a token for w, for audience aud.
func (f *fixture) token(t *testing.T, w *tokenstest.Workload, aud string) string {
	t.Helper()
	r, err := f.env.Service.Token(t.Context(), w.Cert, map[string][]string{"grant_type": {tokens.GrantClientCredentials}, "audience": {aud}})
	if err != nil {
		t.Fatalf("token for %s: %v", w.ID, err)
	}
	return r.AccessToken
}

// call sends a request with a bearer token (none if empty) and a JSON
// body (none if nil), and returns the status and the body.
func (f *fixture) call(t *testing.T, method, path, bearer string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, ok := body.([]byte)
		if !ok {
			b, _ = json.Marshal(body)
		}
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequestWithContext(t.Context(), method, f.srv.URL+path, rd)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := (&http.Client{Transport: &http.Transport{TLSClientConfig: f.env.ClientTLS(nil)}}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

// create creates a stream as the holder of bearer and returns it.
func (f *fixture) create(t *testing.T, bearer string, req ssf.StreamConfig) ssf.StreamConfig {
	t.Helper()
	status, body := f.call(t, http.MethodPost, ssf.PathStream, bearer, req)
	if status != http.StatusCreated {
		t.Fatalf("create stream: %d %s", status, body)
	}
	var c ssf.StreamConfig
	if err := json.Unmarshal(body, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

// poll polls stream id and returns the SETs by jti.
func (f *fixture) poll(t *testing.T, bearer, id string, req ssf.PollRequest) ssf.PollResponse {
	t.Helper()
	status, body := f.call(t, http.MethodPost, ssf.PathPoll+id, bearer, req)
	if status != http.StatusOK {
		t.Fatalf("poll: %d %s", status, body)
	}
	var r ssf.PollResponse
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

// revokeToken issues w a token for another workload and revokes it,
// returning its jti.
func (f *fixture) revokeToken(t *testing.T, w *tokenstest.Workload, reason string) string {
	t.Helper()
	r, err := f.env.Service.Token(t.Context(), w.Cert, map[string][]string{"grant_type": {tokens.GrantClientCredentials}, "audience": {"spiffe://sigil.test/workload/db"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.env.Store.RevokeToken(t.Context(), r.JTI, reason, time.Now()); err != nil {
		t.Fatal(err)
	}
	return r.JTI
}

// serial is w's certificate's serial as the store has it.
func serial(w *tokenstest.Workload) string { return device.Serial(w.Cert) }

// set is a verified SET: its typ header and claims.
type set struct {
	typ    string
	claims map[string]any
}

// verifySET checks raw against the published JWKS, as a receiver would.
func (f *fixture) verifySET(t *testing.T, raw string) set {
	t.Helper()
	jws, err := jose.ParseSigned(raw, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatalf("parse SET: %v", err)
	}
	data, _ := f.env.Keys.JWKS()
	var keys jose.JSONWebKeySet
	if err := json.Unmarshal(data, &keys); err != nil {
		t.Fatal(err)
	}
	hdr := jws.Signatures[0].Header
	found := keys.Key(hdr.KeyID)
	if len(found) != 1 {
		t.Fatalf("SET signed by kid %q, not in JWKS", hdr.KeyID)
	}
	payload, err := jws.Verify(found[0])
	if err != nil {
		t.Fatalf("SET signature: %v", err)
	}
	var s set
	s.typ, _ = hdr.ExtraHeaders["typ"].(string)
	if err := json.Unmarshal(payload, &s.claims); err != nil {
		t.Fatal(err)
	}
	return s
}

// pushReceiver is an RFC 8935 push endpoint over TLS that answers each
// push with the next status of its script (202 once the script is done)
// and keeps the SETs it accepted.
type pushReceiver struct {
	srv *httptest.Server
	mu  sync.Mutex
	// script is the statuses to answer next.
	script   []int
	accepted []string
	tries    int
	auth     []string
}

func newPushReceiver(t *testing.T) *pushReceiver {
	p := &pushReceiver{}
	p.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		p.mu.Lock()
		defer p.mu.Unlock()
		p.tries++
		p.auth = append(p.auth, r.Header.Get("Authorization"))
		status := http.StatusAccepted
		if len(p.script) > 0 {
			status, p.script = p.script[0], p.script[1:]
		}
		if r.Header.Get("Content-Type") != "application/secevent+jwt" || r.URL.Path != "/events" {
			status = http.StatusBadRequest
		}
		if status == http.StatusAccepted {
			p.accepted = append(p.accepted, string(body))
		}
		w.WriteHeader(status)
	}))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *pushReceiver) got() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.accepted...)
}

// claimsOf decodes a SET's claims without verifying it.
func claimsOf(t *testing.T, raw string) map[string]any {
	t.Helper()
	parts := strings.Split(raw, ".")
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	json.Unmarshal(b, &c)
	return c
}
