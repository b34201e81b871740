package main_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	"github.com/sigil-dev/sigil/client"
	"github.com/sigil-dev/sigil/internal/agent"
	"github.com/sigil-dev/sigil/testenv"
)

// debianPython is Debian's interpreter, with python3-jwt (make test installs
// both).
const debianPython = "/usr/bin/python3"

// sidecar is one running `sigil agent` and what it wrote.
type sidecar struct {
	cmd   *exec.Cmd
	ready agent.Ready
	log   string // path
	out   string // --out
	done  chan error
}

// logged counts the agent's log lines matching re.
func (a *sidecar) logged(t testing.TB, re string) int {
	t.Helper()
	data, err := os.ReadFile(a.log)
	if err != nil {
		t.Fatal(err)
	}
	return len(regexp.MustCompile(re).FindAll(data, -1))
}

// startAgent runs sigil agent for the workload name with args and waits
// until it serves.
func (s *stack) startAgent(t testing.TB, name string, args ...string) *sidecar {
	t.Helper()
	a := &sidecar{log: filepath.Join(s.dir, name+".agent.log"), out: filepath.Join(s.dir, name+".out"), done: make(chan error, 1)}
	readyFile := filepath.Join(s.dir, name+".ready")
	args = append([]string{"agent", "--state", filepath.Join(s.dir, name), "--out", a.out, "--ready", readyFile}, args...)
	a.cmd = exec.Command(filepath.Join(s.bin, "sigil"), args...)
	logf, err := os.Create(a.log)
	if err != nil {
		t.Fatal(err)
	}
	a.cmd.Stdout, a.cmd.Stderr = logf, logf
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { a.done <- a.cmd.Wait(); logf.Close() }()
	t.Cleanup(func() {
		a.cmd.Process.Kill()
		<-a.done
	})
	testenv.WaitForNil(t, 30*time.Second, name+"'s agent to serve", func() error {
		data, err := os.ReadFile(readyFile)
		if err == nil {
			return json.Unmarshal(data, &a.ready)
		}
		select {
		case err := <-a.done:
			a.done <- err
			log, _ := os.ReadFile(a.log)
			t.Fatalf("%s's agent exited: %v\n%s", name, err, log)
		default:
		}
		return err
	})
	return a
}

// startPython runs examples/sidecar/showcase.py as role, beside the agent
// whose ready file is DIR/role.ready, and returns its address.
func (s *stack) startPython(t *testing.T, role string) string {
	t.Helper()
	ready := filepath.Join(s.dir, role+".addr")
	cmd := exec.Command(debianPython, filepath.Join(s.root, "examples", "sidecar", "showcase.py"),
		"--role", role, "--agent", filepath.Join(s.dir, role+".ready"), "--ready", ready)
	logf, err := os.Create(filepath.Join(s.dir, role+".py.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s (apt-get install python3): %v", debianPython, err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		logf.Close()
	})
	var addr []byte
	testenv.WaitForNil(t, 10*time.Second, role+".py to listen", func() error {
		var err error
		addr, err = os.ReadFile(ready)
		return err
	})
	return strings.TrimSpace(string(addr))
}

// charge is payments' answer.
type charge struct {
	Charged string   `json:"charged"`
	For     string   `json:"for"`
	Act     []string `json:"act"`
	Scope   []string `json:"scope"`
	Caller  string   `json:"caller"`
	Txn     string   `json:"txn"`
}

// TestSidecarShowcase is TestShowcase's story with the three services in
// Python (standard library only) behind their agents: the agents terminate
// mTLS with the TPM keys, verify the tokens, pass identity in headers and
// exchange tokens on the way out; their certificates renew under traffic
// without a failed request.
func TestSidecarShowcase(t *testing.T) {
	t.Parallel()
	s := startStack(t, "4")
	id := func(n string) string { return "spiffe://sigil.test/workload/" + n }
	for i, n := range []string{"frontend", "orders", "payments", "reports"} {
		addr, log := s.tpm(i)
		if out, code := s.run("sigil", "enroll", "--server-auth", "--tpm", addr, "--event-log", log,
			"--identity", id(n), "--state", filepath.Join(s.dir, n)); code != 0 {
			t.Fatalf("enroll %s: %s", n, out)
		}
	}
	user := s.userToken(t, "frontend", "orders:read orders:write payments:charge")
	// Taken before orders' agent holds its TPM (one connection at a time).
	stolen, code := s.runBinary("sigil", "token", "--state", filepath.Join(s.dir, "orders"),
		"--audience", id("payments"), "--scope", "payments:charge")
	if code != 0 {
		t.Fatalf("sigil token: %s", stolen)
	}
	stolen = strings.TrimSpace(stolen)

	renew := []string{"--renew-after", "0.0008"} // about every 3 s
	payPy, ordPy, fePy := s.startPython(t, "payments"), s.startPython(t, "orders"), s.startPython(t, "frontend")
	payments := s.startAgent(t, "payments", append(renew, "--ingress", "127.0.0.1:0", "--upstream", "http://"+payPy,
		"--ingress-scope", "payments:charge", "--metrics", "127.0.0.1:0")...)
	orders := s.startAgent(t, "orders", append(renew, "--ingress", "127.0.0.1:0", "--upstream", "http://"+ordPy,
		"--ingress-scope", "orders:write", "--egress", "127.0.0.1:0",
		"--target", "payments=https://"+payments.ready.Ingress+" "+id("payments")+" payments:charge")...)
	reloads := filepath.Join(s.dir, "frontend.reloads")
	frontend := s.startAgent(t, "frontend", append(renew, "--ingress", "127.0.0.1:0", "--ingress-edge", "--upstream", "http://"+fePy,
		"--egress", "127.0.0.1:0", "--socket", filepath.Join(s.dir, "frontend.sock"),
		"--reload-cmd", "echo reloaded >> "+reloads,
		"--target", "orders=https://"+orders.ready.Ingress+" "+id("orders")+" orders:write payments:charge")...)

	bundle, err := x509bundle.Load(spiffeid.RequireTrustDomainFromString("sigil.test"), s.env["SIGIL_CA_BUNDLE"])
	if err != nil {
		t.Fatal(err)
	}
	userTLS := tlsconfig.TLSClientConfig(bundle, tlsconfig.AuthorizeID(spiffeid.RequireFromString(id("frontend"))))
	// A handshake per request, so each meets the agent's current certificate.
	users := &http.Client{Transport: &http.Transport{TLSClientConfig: userTLS, DisableKeepAlives: true}, Timeout: 30 * time.Second}
	post := func(hc *http.Client, url, token string, hdr ...string) (int, []byte, error) {
		req, _ := http.NewRequest(http.MethodPost, url, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := hc.Do(req)
		if err != nil {
			return 0, nil, err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		return resp.StatusCode, append(body, resp.Header.Get("WWW-Authenticate")...), err
	}
	checkout := func() (charge, error) {
		status, body, err := post(users, "https://"+frontend.ready.Ingress+"/checkout", user)
		var c charge
		if err == nil && status != http.StatusOK {
			err = fmt.Errorf("checkout: %d %s", status, body)
		}
		if err == nil {
			err = json.Unmarshal(body, &c)
		}
		return c, err
	}

	c, err := checkout()
	if err != nil {
		t.Fatal(err)
	}
	if c.For != "alice" || strings.Join(c.Act, " ") != id("orders")+" "+id("frontend") ||
		strings.Join(c.Scope, " ") != "payments:charge" || c.Caller != id("orders") {
		t.Fatalf("checkout: %+v, want for alice, act [orders frontend], scope payments:charge, caller orders", c)
	}

	t.Run("files and OpenSSL", func(t *testing.T) { checkAgentFiles(t, s, frontend, reloads) })

	t.Run("renewal under traffic", func(t *testing.T) {
		start := map[*sidecar]int{}
		for _, a := range []*sidecar{frontend, orders, payments} {
			start[a] = a.logged(t, `msg="certificate renewed"`)
		}
		var ok, failed atomic.Int32
		var firstErr atomic.Value
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for range 2 {
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					if _, err := checkout(); err != nil {
						failed.Add(1)
						firstErr.CompareAndSwap(nil, err)
					} else {
						ok.Add(1)
					}
				}
			})
		}
		testenv.WaitFor(t, 90*time.Second, "two renewals by each agent under traffic", func() bool {
			for a, n := range start {
				if a.logged(t, `msg="certificate renewed"`) < n+2 {
					return false
				}
			}
			return true
		})
		close(stop)
		wg.Wait()
		if failed.Load() > 0 {
			t.Errorf("%d of %d requests failed during renewals; first: %v", failed.Load(), ok.Load()+failed.Load(), firstErr.Load())
		}
		t.Logf("%d checkouts through three agents during six renewals", ok.Load())
		if n := frontend.logged(t, `msg="reload hook ran"`); n < 3 {
			t.Errorf("the reload hook ran %d times", n)
		}
	})

	t.Run("stolen token and forged headers", func(t *testing.T) {
		rc, err := client.New(t.Context(), client.Config{StateDir: filepath.Join(s.dir, "reports")})
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		paymentsID := spiffeid.RequireFromString(id("payments"))
		reports := &http.Client{Transport: &http.Transport{TLSClientConfig: rc.ClientTLSConfig(paymentsID)}, Timeout: 30 * time.Second}
		url := "https://" + payments.ready.Ingress + "/charge"
		status, body, err := post(reports, url, stolen)
		if err != nil || status != http.StatusUnauthorized || !strings.Contains(string(body), `error="invalid_token"`) {
			t.Errorf("stolen token from another host: %d %s %v", status, body, err)
		}
		own, err := rc.CachedToken(t.Context(), id("payments"), []string{"payments:charge"}, "")
		if err != nil {
			t.Fatal(err)
		}
		status, body, err = post(reports, url, own.AccessToken, "X-Sigil-Subject", "alice", "X-Sigil-Act", id("frontend"), "X-Forwarded-Client-Cert", "URI="+id("frontend"))
		var got charge
		if err != nil || status != http.StatusOK || json.Unmarshal(body, &got) != nil {
			t.Fatalf("reports with its own token: %d %s %v", status, body, err)
		}
		if got.For != id("reports") || len(got.Act) != 0 || got.Caller != id("reports") {
			t.Errorf("forged identity headers reached payments: %+v", got)
		}
		// The ingress follows the revocation feed: a revoked token is
		// refused within a second or so.
		if err := rc.Workload().Revoke(t.Context(), own.AccessToken); err != nil {
			t.Fatal(err)
		}
		testenv.WaitFor(t, 10*time.Second, "the ingress to refuse the revoked token", func() bool {
			status, _, err := post(reports, url, own.AccessToken)
			return err == nil && status == http.StatusUnauthorized
		})
		noCert := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsconfig.TLSClientConfig(bundle, tlsconfig.AuthorizeID(paymentsID))}}
		if _, _, err := post(noCert, url, stolen); err == nil || !strings.Contains(err.Error(), "certificate required") {
			t.Errorf("no client certificate: %v", err)
		}
	})

	t.Run("token service", func(t *testing.T) { checkTokenService(t, frontend, user) })

	t.Run("transaction token follows the chain", func(t *testing.T) {
		rc, err := client.New(t.Context(), client.Config{StateDir: filepath.Join(s.dir, "reports")})
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		alice := s.userToken(t, "reports", "orders:write payments:charge")
		txn, err := rc.TxnToken(t.Context(), client.TxnRequest{SubjectToken: alice, Scope: []string{"orders:write", "payments:charge"}})
		if err != nil {
			t.Fatal(err)
		}
		ctx := client.WithTxnToken(client.WithSubjectToken(t.Context(), alice), txn.AccessToken)
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+orders.ready.Ingress+"/orders", nil)
		resp, err := rc.HTTPClient(spiffeid.RequireFromString(id("orders")), "orders:write", "payments:charge").Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var got charge
		if err := json.NewDecoder(resp.Body).Decode(&got); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("reports → orders → payments: %s %v", resp.Status, err)
		}
		var claims struct {
			Txn string `json:"txn"`
		}
		payload, _ := base64.RawURLEncoding.DecodeString(strings.Split(txn.AccessToken, ".")[1])
		json.Unmarshal(payload, &claims)
		if claims.Txn == "" || got.Txn != claims.Txn || got.For != "alice" || strings.Join(got.Act, " ") != id("orders")+" "+id("reports") {
			t.Errorf("payments saw transaction %q for %q act %v; want %q for alice, act [orders reports]", got.Txn, got.For, got.Act, claims.Txn)
		}
	})

	t.Run("logout stops the chain", func(t *testing.T) {
		status, body, err := post(users, "https://"+frontend.ready.Ingress+"/logout", user)
		if err != nil || status != http.StatusOK {
			t.Fatalf("logout: %d %s %v", status, body, err)
		}
		_, err = checkout()
		if err == nil || !strings.Contains(err.Error(), "403") || !strings.Contains(err.Error(), "subject_token has been revoked") {
			t.Errorf("checkout after logout: %v", err)
		}
	})

	t.Run("metrics", func(t *testing.T) {
		resp, err := http.Get("http://" + payments.ready.Metrics + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if !regexp.MustCompile(`sigil_client_renewals_total\{result="renewed",spiffe_id="` + id("payments") + `"\} [1-9]`).Match(body) {
			t.Errorf("metrics:\n%s", body)
		}
	})

	t.Run("SIGTERM", func(t *testing.T) {
		frontend.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-frontend.done:
			frontend.done <- err
			if err != nil {
				t.Errorf("exit after SIGTERM: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("the agent did not exit within 20 s of SIGTERM")
		}
		for _, f := range []string{frontend.ready.Socket, filepath.Join(s.dir, "frontend.ready")} {
			if _, err := os.Stat(f); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s left behind: %v", f, err)
			}
		}
		if frontend.logged(t, `msg="agent stopped"`) != 1 {
			t.Error("no \"agent stopped\" in the log")
		}
	})
}

// checkAgentFiles checks what the agent wrote for software that reads
// files: the chain for the TPM key, the bundle, the TSS2 key owner-only,
// the OpenSSL configuration it checked, the operator told that swtpm has
// no resource manager, the reload hook run.
func checkAgentFiles(t *testing.T, s *stack, a *sidecar, reloads string) {
	chain := readPEM(t, filepath.Join(a.out, agent.ChainFile))
	if len(chain) != 2 || chain[0].URIs[0].String() != a.ready.SPIFFEID {
		t.Errorf("svid.pem: %d certificates", len(chain))
	}
	if fi, err := os.Stat(filepath.Join(a.out, agent.KeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file: %v %v", fi.Mode(), err)
	}
	if key := readFileT(t, filepath.Join(a.out, agent.KeyFile)); !strings.HasPrefix(string(key), "-----BEGIN TSS2 PRIVATE KEY-----") {
		t.Errorf("key file is not a TSS2 PEM: %.40s", key)
	}
	if b := readFileT(t, filepath.Join(a.out, agent.BundleFile)); string(b) != string(readFileT(t, s.env["SIGIL_CA_BUNDLE"])) {
		t.Error("bundle.pem is not the trust bundle")
	}
	if a.logged(t, `msg="openssl signs with the TPM key through tpm2-openssl"`) != 1 {
		t.Error("the OpenSSL check did not pass")
	}
	if a.logged(t, `level=WARN msg="no TPM resource manager: swtpm has no resource manager`) != 1 {
		t.Error("the operator was not told that swtpm has no resource manager")
	}
	if data, _ := os.ReadFile(reloads); !strings.HasPrefix(string(data), "reloaded\n") {
		t.Errorf("reload command output: %q", data)
	}
}

// checkTokenService gets tokens from the agent's socket as non-Go code
// would, and sees the client's cache, owner-only permissions and errors.
func checkTokenService(t *testing.T, a *sidecar, user string) {
	fi, err := os.Stat(a.ready.Socket)
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("socket: %v %v", fi.Mode(), err)
	}
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", a.ready.Socket)
	}}}
	ask := func(body string) (int, map[string]any) {
		path := agent.PathToken
		if strings.Contains(body, "subject_token") {
			path = agent.PathExchange
		}
		resp, err := hc.Post("http://agent"+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	body := `{"audience":"spiffe://sigil.test/workload/payments","scope":"payments:charge"}`
	status, first := ask(body)
	_, second := ask(body)
	if status != http.StatusOK || first["access_token"] == nil || first["access_token"] != second["access_token"] {
		t.Errorf("token: %d %v; again: the cached one? %v", status, first["error_description"], first["access_token"] == second["access_token"])
	}
	status, out := ask(`{"audience":"spiffe://other.test/workload/x"}`)
	if status != http.StatusForbidden || out["error"] != "access_denied" {
		t.Errorf("audience the policy refuses: %d %v", status, out)
	}
	status, out = ask(`{"subject_token":"` + user + `","audience":"spiffe://sigil.test/workload/orders","scope":"orders:read"}`)
	if status != http.StatusOK || out["access_token"] == nil {
		t.Errorf("exchange the user's token: %d %v", status, out)
	}
	status, out = ask(`{"subject_token":"` + user + `","audience":"spiffe://sigil.test/workload/orders","scope":"admin"}`)
	if status != http.StatusForbidden || !strings.Contains(fmt.Sprint(out["error_description"]), "scope") {
		t.Errorf("exchange for a wider scope: %d %v", status, out)
	}
}
