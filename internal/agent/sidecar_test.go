package agent

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// An edge ingress passes the user's Authorization through but never a
// header of the identity contract sent from outside.
func TestIngressStripsForgedIdentityHeaders(t *testing.T) {
	var got http.Header
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got = r.Header.Clone() }))
	defer upstream.Close()
	u, _ := url.Parse(upstream.URL)
	in := &Ingress{Upstream: u, Log: slog.New(slog.DiscardHandler), contexts: newContexts()}
	req := httptest.NewRequest(http.MethodPost, "/checkout", nil)
	req.Header.Set("Authorization", "Bearer user-token")
	for _, h := range []string{HeaderCaller, HeaderSubject, HeaderAct, HeaderScope, HeaderContext, HeaderClaims, HeaderTxn, HeaderTxnClaims, "X-Sigil-Anything", HeaderXFCC, "Txn-Token"} {
		req.Header.Set(h, "forged")
	}
	req.Header.Add("x-sigil-subject", "forged too")
	in.Handler().ServeHTTP(httptest.NewRecorder(), req)
	if got == nil {
		t.Fatal("the upstream was not called")
	}
	for k := range got {
		if strings.HasPrefix(k, HeaderPrefix) || k == HeaderXFCC || k == "Txn-Token" {
			t.Errorf("upstream got %s: %q", k, got[k])
		}
	}
	if got.Get("Authorization") != "Bearer user-token" {
		t.Errorf("Authorization = %q", got.Get("Authorization"))
	}
}

func TestEgressRefusesUnknownTargetsAndContexts(t *testing.T) {
	eg := &Egress{Log: slog.New(slog.DiscardHandler), contexts: newContexts()}
	h := eg.Handler()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/nowhere/x", nil))
	if body, _ := io.ReadAll(rec.Body); rec.Code != 404 || !strings.Contains(string(body), `no target \"nowhere\"`) {
		t.Errorf("unknown target: %d %s", rec.Code, body)
	}
}

func TestContexts(t *testing.T) {
	cs := newContexts()
	now := time.Unix(1_000_000, 0)
	cs.now = func() time.Time { return now }
	h := cs.put("token-a", "", now.Add(time.Minute))
	if h2 := cs.put("token-a", "", now.Add(time.Minute)); h2 != h {
		t.Errorf("the same token got two handles")
	}
	if h == cs.put("token-b", "", now.Add(time.Minute)) {
		t.Errorf("two tokens got one handle")
	}
	withTxn := cs.put("token-a", "txn-1", now.Add(time.Minute))
	if withTxn == h || withTxn == cs.put("token-a", "txn-2", now.Add(time.Minute)) {
		t.Errorf("a token with and without a transaction token, or with two, got one handle")
	}
	if strings.Contains(h, "token") {
		t.Errorf("handle %q shows its token", h)
	}
	if e, ok := cs.get(h); !ok || e.token != "token-a" || e.txn != "" {
		t.Errorf("get = %+v %v", e, ok)
	}
	if e, ok := cs.get(withTxn); !ok || e.token != "token-a" || e.txn != "txn-1" {
		t.Errorf("get = %+v %v", e, ok)
	}
	if _, ok := newContexts().get(h); ok {
		t.Error("another process's handle resolved")
	}
	now = now.Add(time.Minute)
	if _, ok := cs.get(h); ok {
		t.Error("an expired token's handle resolved")
	}
	for i := range maxContexts + 10 {
		cs.put(strings.Repeat("x", i), "", now.Add(time.Hour))
	}
	if len(cs.m) > maxContexts {
		t.Errorf("%d contexts kept, bound %d", len(cs.m), maxContexts)
	}
}

func TestParseTarget(t *testing.T) {
	tg, err := ParseTarget("payments=https://127.0.0.1:8443 spiffe://td/workload/payments payments:charge payments:refund")
	if err != nil || tg.Name != "payments" || tg.URL.Host != "127.0.0.1:8443" || tg.ID.String() != "spiffe://td/workload/payments" || len(tg.Scope) != 2 {
		t.Fatalf("%+v %v", tg, err)
	}
	for _, bad := range []string{
		"payments", "=https://h:1 spiffe://td/x", "p=https://h:1", "p=http://h:1 spiffe://td/x", "p=https://h:1 https://td/x", "a/b=https://h:1 spiffe://td/x",
	} {
		if _, err := ParseTarget(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestEgressListensOnLoopbackOnly(t *testing.T) {
	for addr, ok := range map[string]bool{"127.0.0.1:0": true, "[::1]:80": true, "localhost:8080": true, "0.0.0.0:80": false, ":80": false, "10.0.0.1:80": false} {
		if err := checkLoopback(addr); (err == nil) != ok {
			t.Errorf("%s: %v", addr, err)
		}
	}
}

func TestListenUnixOwnerOnly(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "agent.sock")
	if err := os.WriteFile(path, []byte("not a socket"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := listenUnix(path, ""); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("over a regular file: %v", err)
	}
	os.Remove(path)
	for range 2 { // the second replaces the socket the first left
		ln, err := listenUnix(path, "")
		if err != nil {
			t.Fatal(err)
		}
		fi, err := os.Lstat(path)
		if err != nil || fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
			t.Fatalf("socket: %v %v", fi.Mode(), err)
		}
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatalf("dial the renamed socket: %v", err)
		}
		c.Close()
		if _, err := listenUnix(path, ""); err == nil || !strings.Contains(err.Error(), "another process serves on it") {
			t.Errorf("over a socket in use: %v", err)
		}
		ln.Close()
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("left in the directory: %v", entries)
	}
}
