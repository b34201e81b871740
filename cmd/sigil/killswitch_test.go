package main_test

import (
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
)

// revokedPeer is the attack over mTLS: a workload whose device is disabled
// keeps calling a workload server, and keeps serving another workload,
// resuming the TLS sessions it set up before (a resumption sends no
// certificate, and VerifyPeerCertificate does not run). Once the
// revocation feed has its certificate, the server's ServerTLSConfig
// refuses it as a client, and the caller's ClientTLSConfig as a server,
// resumed handshakes included.
func (e *libStack) revokedPeer(t *testing.T) {
	victim := e.open(t, 3, "victim", true, nil)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{
		Handler:   http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}),
		TLSConfig: victim.ServerTLSConfig(tlsconfig.AuthorizeMemberOf(victim.ID().TrustDomain())),
		ErrorLog:  log.New(io.Discard, "", 0),
	}
	go hs.ServeTLS(l, "", "")
	t.Cleanup(func() { hs.Close() })

	asClient := resumingClient(victim.ClientTLSConfig(e.payments.ID()), e.paymentsSrv.url+"/victim")
	asServer := resumingClient(e.frontend.ClientTLSConfig(victim.ID()), "https://"+l.Addr().String())
	for _, c := range []struct {
		name   string
		get    func() (*http.Response, error)
		status int
	}{{"victim → payments", asClient, http.StatusUnauthorized}, {"frontend → victim", asServer, http.StatusOK}} {
		for i, wantResumed := range []bool{false, true} {
			resp, err := c.get()
			if err != nil || resp.StatusCode != c.status || resp.TLS.DidResume != wantResumed {
				t.Fatalf("%s, call %d before the disable: %v %v; want %d on a handshake resumed: %v", c.name, i, resp, err, c.status, wantResumed)
			}
		}
	}
	ek := deviceOf(t, e.stack, victim.ID().String())
	if out, code := e.run("sigild", "--config", filepath.Join(e.dir, "sigild.yaml"), "device", "disable", ek); code != 0 {
		t.Fatalf("device disable: exit %d\n%s", code, out)
	}
	start := time.Now()
	for _, c := range []struct {
		name string
		get  func() (*http.Response, error)
		// asClient: in TLS 1.3 the client finishes its handshake before the
		// server checks its certificate, so the server's refusal reaches it
		// as a "bad certificate" alert, or, when its request was written
		// first, as the connection the server closed.
		asClient bool
	}{{"payments refuses the victim as a client", asClient, true}, {"frontend refuses the victim as a server", asServer, false}} {
		name, get := c.name, c.get
		var last error
		for last == nil {
			_, last = get()
			if last == nil && time.Since(start) > libRevocationWait {
				t.Fatalf("%s: still accepted %v after the disable, on a resumed session", name, time.Since(start))
			}
		}
		t.Logf("%s %v after the disable: %v", name, time.Since(start), last)
		if !strings.Contains(last.Error(), "certificate") && !(c.asClient && closedByPeer(last)) {
			t.Errorf("%s: %v, want a refused certificate", name, last)
		}
	}
}

// closedByPeer reports whether err is the peer closing the connection.
func closedByPeer(err error) bool {
	return errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF)
}

// resumingClient GETs url with cfg, each time over a new connection that
// resumes the TLS session of the one before.
func resumingClient(cfg *tls.Config, url string) func() (*http.Response, error) {
	cfg.ClientSessionCache = tls.NewLRUClientSessionCache(8)
	tr := &http.Transport{TLSClientConfig: cfg}
	hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	return func() (*http.Response, error) {
		defer tr.CloseIdleConnections()
		resp, err := hc.Get(url)
		if err == nil {
			resp.Body.Close()
		}
		return resp, err
	}
}

// deviceOf is the EK hash of the device holding identity, from sigild
// device list.
func deviceOf(t *testing.T, s *stack, identity string) string {
	t.Helper()
	out, code := s.run("sigild", "--config", filepath.Join(s.dir, "sigild.yaml"), "device", "list")
	if code != 0 {
		t.Fatalf("device list: exit %d\n%s", code, out)
	}
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.Contains(line, identity) {
			return f[0]
		}
	}
	t.Fatalf("no device holds %s:\n%s", identity, out)
	return ""
}

// killWithin is how soon after `sigild device disable` returns every
// service must refuse the disabled device (issue 11: within a second).
const killWithin = time.Second

// An attempt is one use of the disabled device's identity: when it
// started and whether it was refused.
type attempt struct {
	what    string
	start   time.Time
	refused bool
	out     string
}

// disableUnderTraffic is the kill switch in the showcase topology: reports
// calls payments and orders over mTLS with its tokens, gets tokens from
// sigild, and inspector (the audience of one of reports' tokens)
// introspects and exchanges it, all in loops, while the operator disables
// reports' device. From a second after the disable returns, every attempt
// is refused: at the TLS handshake or by the token's verification at the
// services, by sigild (invalid_client, inactive, invalid_request). The audit
// log says why.
func disableUnderTraffic(t *testing.T, s *stack, payments, orders string) {
	id := func(n string) string { return "spiffe://sigil.test/workload/" + n }
	state := func(n string) string { return filepath.Join(s.dir, n) }
	token := func(aud, scope string) string {
		out, code := s.runBinary("sigil", "token", "--state", state("reports"), "--audience", id(aud), "--scope", scope)
		if code != 0 {
			t.Fatalf("sigil token for %s: %s", aud, out)
		}
		return strings.TrimSpace(out)
	}
	toPayments, toOrders := token("payments", "payments:charge"), token("orders", "orders:write payments:charge")
	toInspector := token("inspector", "read")
	call := func(addr, path, name, tok string) func() (bool, string) {
		return func() (bool, string) {
			out, code := s.run("showcase", "call", "--state", state("reports"), "--url", "https://"+addr+path, "--id", id(name), "--token", tok)
			return code != 0, out
		}
	}
	// reports' TPM serves one connection at a time: its uses take turns,
	// and so do inspector's.
	reports := []check{
		{"reports → payments over mTLS with its token", call(payments, "/charge", "payments", toPayments)},
		{"reports → orders → payments with its token", call(orders, "/orders", "orders", toOrders)},
		{"reports asks sigild for a token", func() (bool, string) {
			out, code := s.run("sigil", "token", "--state", state("reports"), "--audience", id("payments"))
			return code != 0, out
		}},
	}
	inspector := []check{
		{"inspector introspects reports' token", func() (bool, string) {
			out, code := s.run("sigil", "introspect", "--state", state("inspector"), toInspector)
			if code != 0 {
				t.Errorf("introspect: exit %d: %s", code, out)
			}
			return !strings.Contains(strings.ReplaceAll(out, " ", ""), `"active":true`), out
		}},
		{"inspector exchanges reports' token", func() (bool, string) {
			out, code := s.run("sigil", "exchange", "--state", state("inspector"), "--subject-token", toInspector, "--audience", id("payments"))
			return code != 0, out
		}},
	}
	for _, c := range append(slices.Clone(reports), inspector...) {
		if refused, out := c.run(); refused {
			t.Fatalf("%s before the disable: refused: %s", c.what, out)
		}
	}

	var disabledAt atomic.Int64
	done := make(chan struct{})
	results := make(chan []attempt, 2)
	for _, checks := range [][]check{reports, inspector} {
		go func() { results <- traffic(checks, &disabledAt, done) }()
	}
	ek := deviceOf(t, s, id("reports"))
	out, code := s.run("sigild", "--config", filepath.Join(s.dir, "sigild.yaml"), "device", "disable", ek)
	disabledAt.Store(time.Now().UnixNano())
	if code != 0 {
		close(done)
		t.Fatalf("device disable: exit %d\n%s", code, out)
	}
	t.Logf("sigild device disable: %s", strings.TrimSpace(out))
	var all []attempt
	for range 2 {
		all = append(all, <-results...)
	}
	close(done)
	checkKilled(t, all, time.Unix(0, disabledAt.Load()))
	checkAuditedWhy(t, s, toPayments)
}

type check struct {
	what string
	run  func() (refused bool, out string)
}

// traffic runs checks in turn until, after the disable, each has been
// refused by an attempt that started killWithin after it (or 30 s pass),
// and returns every attempt.
func traffic(checks []check, disabledAt *atomic.Int64, done <-chan struct{}) []attempt {
	var out []attempt
	late := map[string]bool{}
	deadline := time.Now().Add(30 * time.Second)
	for len(late) < len(checks) && time.Now().Before(deadline) {
		for _, c := range checks {
			select {
			case <-done:
				return out
			default:
			}
			start := time.Now()
			refused, text := c.run()
			out = append(out, attempt{what: c.what, start: start, refused: refused, out: text})
			if at := disabledAt.Load(); at != 0 && start.After(time.Unix(0, at).Add(killWithin)) {
				late[c.what] = true
			}
		}
	}
	return out
}

// checkKilled: every attempt that started killWithin after the disable
// was refused, and there was one of each kind.
func checkKilled(t *testing.T, all []attempt, disabledAt time.Time) {
	t.Helper()
	firstRefused := map[string]time.Duration{}
	seenLate := map[string]bool{}
	for _, a := range all {
		since := a.start.Sub(disabledAt)
		if !a.refused && since > killWithin {
			t.Errorf("%s accepted %v after the disable: %s", a.what, since, redacted(a.out))
		}
		if since > killWithin {
			seenLate[a.what] = true
		}
		if _, ok := firstRefused[a.what]; a.refused && !ok {
			firstRefused[a.what] = since
		}
	}
	for what, since := range firstRefused {
		t.Logf("%s: first refused by an attempt started %v after the disable", what, since)
	}
	for _, what := range []string{"reports → payments over mTLS with its token", "reports → orders → payments with its token",
		"reports asks sigild for a token", "inspector introspects reports' token", "inspector exchanges reports' token"} {
		if !seenLate[what] {
			t.Errorf("%s: no attempt later than %v after the disable", what, killWithin)
		}
	}
}

// redacted is out with a token in it named, not shown.
func redacted(out string) string {
	if strings.HasPrefix(strings.TrimSpace(out), "eyJ") {
		return fmt.Sprintf("a token (%d bytes)", len(strings.TrimSpace(out)))
	}
	return out
}

// checkAuditedWhy: the exported audit log has the device disabled, its
// certificate revoked for that reason, and reports' token revoked because
// its certificate was.
func checkAuditedWhy(t *testing.T, s *stack, tok string) {
	t.Helper()
	dir := filepath.Join(s.dir, "export-killswitch")
	if out, code := s.run("sigild", "--config", filepath.Join(s.dir, "sigild.yaml"), "audit", "export", dir); code != 0 {
		t.Fatalf("audit export: exit %d\n%s", code, out)
	}
	files, err := filepath.Glob(filepath.Join(dir, "entries", "*"))
	if err != nil || len(files) == 0 {
		t.Fatalf("export has no entries: %v", err)
	}
	var log strings.Builder
	for _, f := range files {
		log.Write(readFileT(t, f))
	}
	jti := jwtID(t, tok)
	for _, want := range []string{
		`"kind":"device.disabled"`,
		`"kind":"certificate.revoked"`,
		`"reason":"device disabled"`,
		`"jti":"` + jti + `"`,
		`"reason":"certificate revoked: device disabled"`,
	} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("the audit log has no %s", want)
		}
	}
	for _, line := range strings.Split(log.String(), "\n") {
		if strings.Contains(line, `"kind":"token.revoked"`) && strings.Contains(line, `"jti":"`+jti+`"`) {
			if !strings.Contains(line, `"reason":"certificate revoked: device disabled"`) {
				t.Errorf("reports' token revoked without saying why: %s", line)
			}
			return
		}
	}
	t.Errorf("no token.revoked entry for reports' token %s", jti)
}

// jwtID is a JWT's jti, unverified.
func jwtID(t *testing.T, tok string) string {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %d parts", len(parts))
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		JTI string `json:"jti"`
	}
	if err := json.Unmarshal(b, &c); err != nil || c.JTI == "" {
		t.Fatalf("no jti: %v", err)
	}
	return c.JTI
}
