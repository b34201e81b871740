package main_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/audit"
	"github.com/sigil-dev/sigil/client"
	"github.com/sigil-dev/sigil/policy"
	"github.com/sigil-dev/sigil/testenv"
)

// replicaStack is the dev stack with two sigild replicas on PostgreSQL
// behind HAProxy (up.sh --replicas 2), with frontend and orders enrolled
// through the balancer.
type replicaStack struct {
	*stack
	replicas []string // each replica's own URL, SIGIL_REPLICAS
}

func startReplicas(t testing.TB) *replicaStack {
	t.Helper()
	s := &replicaStack{stack: startStackArgs(t, "--tpms", "3", "--replicas", "2")}
	s.replicas = strings.Fields(s.env["SIGIL_REPLICAS"])
	if len(s.replicas) != 2 || s.env["SIGIL_SERVER"] == s.replicas[0] || !strings.HasPrefix(s.env["SIGIL_STORE"], "postgres://") {
		t.Fatalf("up.sh --replicas 2 wrote SIGIL_SERVER %q, SIGIL_REPLICAS %q, SIGIL_STORE %.11q…",
			s.env["SIGIL_SERVER"], s.env["SIGIL_REPLICAS"], s.env["SIGIL_STORE"])
	}
	for i, n := range []string{"frontend", "orders"} {
		if out, code := s.enroll(i, "spiffe://sigil.test/workload/"+n, filepath.Join(s.dir, n)); code != 0 {
			t.Fatalf("enroll %s: %s", n, out)
		}
	}
	return s
}

// replicaDir is replica i's directory (0-based): its sigild.yaml,
// sigild.pid and sigild.log.
func (s *replicaStack) replicaDir(i int) string {
	return filepath.Join(s.dir, fmt.Sprintf("replica%d", i+1))
}

// haproxyServer is one replica as HAProxy's statistics show it.
type haproxyServer struct {
	status   string // UP, DOWN, "UP 1/2" (going down), …
	sessions int    // connections HAProxy sent it, in all
}

// balancer reads HAProxy's statistics (CSV, on the balancer's port + 1)
// for each replica, by up.sh's server name (replica1, …).
func (s *replicaStack) balancer(t testing.TB) map[string]haproxyServer {
	t.Helper()
	u, err := url.Parse(s.env["SIGIL_SERVER"])
	if err != nil {
		t.Fatal(err)
	}
	port, _ := strconv.Atoi(u.Port())
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/stats;csv", port+1))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	rows, err := csv.NewReader(resp.Body).ReadAll()
	if err != nil || len(rows) < 1 {
		t.Fatalf("HAProxy statistics: %v", err)
	}
	col := map[string]int{}
	for i, name := range rows[0] {
		col[strings.TrimPrefix(name, "# ")] = i
	}
	out := map[string]haproxyServer{}
	for _, r := range rows[1:] {
		if r[col["pxname"]] == "sigild" && strings.HasPrefix(r[col["svname"]], "replica") {
			n, _ := strconv.Atoi(r[col["stot"]])
			out[r[col["svname"]]] = haproxyServer{status: r[col["status"]], sessions: n}
		}
	}
	return out
}

// kill SIGKILLs replica i and waits until it is gone.
func (s *replicaStack) kill(t testing.TB, i int) {
	t.Helper()
	pid := readPID(t, filepath.Join(s.replicaDir(i), "sigild.pid"))
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 10*time.Second, "the killed replica to be gone", func() bool {
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		return err != nil || strings.Contains(string(raw), ") Z ")
	})
}

// TestReplicas runs the replicated stack's faults on one stack: two sigild
// replicas on one PostgreSQL behind HAProxy. The subtests run in order and
// each leaves both replicas in rotation.
func TestReplicas(t *testing.T) {
	s := startReplicas(t)
	for name, b := range s.balancer(t) {
		if b.status != "UP" {
			t.Fatalf("HAProxy has %s %s after up.sh", name, b.status)
		}
	}
	t.Run("CutOffFromDatabase", func(t *testing.T) { testCutOffReplica(t, s) })
	t.Run("KillUnderLoad", func(t *testing.T) { testKillReplicaUnderLoad(t, s) })
	// A token revoked through one replica is refused by a verifier
	// following the other's feed within propagationWait, every time.
	t.Run("RevocationAcrossReplicas", func(t *testing.T) {
		testRevocationPropagation(t, startPropagation(t, s.stack, s.replicas[0]))
	})
	t.Run("PolicyChangeAppliedOnce", func(t *testing.T) { testPolicyChangeAppliedOnce(t, s) })
}

// Both replicas load a policy set that no longer permits one identity
// (SIGHUP to each): the fleet is re-evaluated once — one replica applies
// the set, the other finds it applied — and the certificate is revoked
// once, with one audit entry; both replicas then run the new set.
func testPolicyChangeAppliedOnce(t *testing.T, s *replicaStack) {
	const victim = "spiffe://sigil.test/workload/replica-victim"
	state := filepath.Join(s.dir, "replica-victim")
	if out, code := s.enroll(2, victim, state); code != 0 {
		t.Fatalf("enroll: %s", out)
	}
	before := strings.Count(s.replicaLogs(t), `"msg":"policy set applied to the fleet"`)
	dir := s.env["SIGIL_POLICY_DIR"]
	rule := filepath.Join(dir, "replica-victim.cedar")
	writeFile(t, rule, `@id("no-replica-victim")
forbid (principal, action, resource) when { resource == Sigil::Identity::"`+victim+`" };
`)
	hup := func() {
		for i := range s.replicas {
			if err := syscall.Kill(readPID(t, filepath.Join(s.replicaDir(i), "sigild.pid")), syscall.SIGHUP); err != nil {
				t.Error(err)
			}
		}
	}
	t.Cleanup(func() { os.Remove(rule); hup() })
	set, err := policy.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	hup()
	loaded := regexp.MustCompile(`"msg":"policy set loaded","dir":"[^"]*","version":"` + set.Version() + `"`)
	testenv.WaitFor(t, 10*time.Second, "both replicas on the new set and the victim refused", func() bool {
		for i := range s.replicas {
			raw, _ := os.ReadFile(filepath.Join(s.replicaDir(i), "sigild.log"))
			if !loaded.Match(raw) {
				return false
			}
		}
		_, code := s.run("sigil", "token", "--state", state, "--audience", "spiffe://sigil.test/workload/orders")
		return code != 0
	})
	if got := strings.Count(s.replicaLogs(t), `"msg":"policy set applied to the fleet"`) - before; got != 1 {
		t.Errorf("the replicas re-evaluated the fleet under the new set %d times, want once", got)
	}
	revocations := 0
	testenv.WaitFor(t, 10*time.Second, "the revocation in the checkpointed log", func() bool {
		revocations = 0
		for _, e := range loggedEntries(t, s.stack) {
			if e.Kind == audit.CertificateRevoked && strings.Contains(string(e.Data), `"spiffe_id":"`+victim+`"`) {
				revocations++
			}
		}
		return revocations > 0
	})
	if revocations != 1 {
		t.Errorf("%d revocation entries for the victim's certificate, want 1", revocations)
	}
}

// replicaLogs is the replicas' logs, concatenated.
func (s *replicaStack) replicaLogs(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	for i := range s.replicas {
		raw, err := os.ReadFile(filepath.Join(s.replicaDir(i), "sigild.log"))
		if err != nil {
			t.Fatal(err)
		}
		b.Write(raw)
	}
	return b.String()
}

// A replica cut off from the database (its connections to PostgreSQL go
// through a proxy the test closes) fails /readyz, HAProxy takes it out of
// rotation and sends it no more connections while exchanges carry on
// through the other replica; once the database is reachable again the
// replica is back, without a restart.
func testCutOffReplica(t *testing.T, s *replicaStack) {
	const cut = 1 // replica2
	dsn, err := url.Parse(s.env["SIGIL_STORE"])
	if err != nil {
		t.Fatal(err)
	}
	proxy := startTCPProxy(t, dsn.Host)
	// Replica 2 reaches PostgreSQL through the proxy from now on: up.sh
	// restarts it with its edited configuration, on its port.
	config := filepath.Join(s.replicaDir(cut), "sigild.yaml")
	viaProxy := *dsn
	viaProxy.Host = proxy.addr
	raw := readFileT(t, config)
	edited := regexp.MustCompile(`(?m)^store: .*$`).ReplaceAll(raw, []byte("store: "+viaProxy.String()))
	writeFile(t, config, string(edited))
	s.kill(t, cut)
	s.up(t)
	replica := fmt.Sprintf("replica%d", cut+1)
	testenv.WaitFor(t, 10*time.Second, replica+" in rotation", func() bool { return s.balancer(t)[replica].status == "UP" })

	hc := bundleClient(t, s.stack)
	proxy.cut()
	testenv.WaitFor(t, 15*time.Second, replica+" failing /readyz", func() bool {
		return status(t, hc, s.replicas[cut]+"/readyz") == http.StatusServiceUnavailable
	})
	testenv.WaitFor(t, 10*time.Second, "HAProxy to take "+replica+" out of rotation", func() bool {
		return s.balancer(t)[replica].status == "DOWN"
	})
	before := s.balancer(t)[replica].sessions
	w := openWorkload(t, s.stack, "frontend")
	for i := range 10 {
		// A new connection each time, so HAProxy chooses a replica for each.
		w.HTTPClient().CloseIdleConnections()
		if _, err := w.Token(t.Context(), client.TokenRequest{Audience: []string{ordersID}}); err != nil {
			t.Fatalf("token %d with %s cut off: %v", i, replica, err)
		}
	}
	if after := s.balancer(t)[replica].sessions; after != before {
		t.Errorf("HAProxy sent %d connections to %s while it was cut off from the database", after-before, replica)
	}

	proxy.restore()
	testenv.WaitFor(t, 30*time.Second, replica+" back in rotation without a restart", func() bool {
		return s.balancer(t)[replica].status == "UP"
	})

	// The replica reaches PostgreSQL directly again, as the next
	// subtests expect; the proxy goes at cleanup.
	writeFile(t, config, string(raw))
	s.kill(t, cut)
	s.up(t)
	testenv.WaitFor(t, 10*time.Second, replica+" in rotation", func() bool { return s.balancer(t)[replica].status == "UP" })
}

// SIGKILL a replica while two workloads, each on its own connection
// through HAProxy (round robin: one to each replica), get tokens as fast as
// answered from two goroutines each: they carry on through the other
// replica, every token acknowledged is in the audit log, and the log
// verifies against each replica, the killed one restarted, with the same
// checkpoint state: one log.
func testKillReplicaUnderLoad(t *testing.T, s *replicaStack) {
	const (
		workers   = 4  // the load: at most 4 requests in flight, 2 per workload
		killAfter = 20 // tokens before the kill
		carryOn   = 40 // tokens after the kill
	)
	var (
		mu       sync.Mutex
		acked    []string // jti of every token a worker received
		failed   []error
		afterAck int
		killed   bool
		wg       sync.WaitGroup
		stop     = make(chan struct{})
	)
	// A TPM serves one connection at a time: one workload per TPM.
	loads := []*client.Workload{openWorkload(t, s.stack, "frontend"), openWorkload(t, s.stack, "orders")}
	for i := range workers {
		w := loads[i%len(loads)]
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				tok, err := w.Token(t.Context(), client.TokenRequest{Audience: []string{"spiffe://sigil.test/workload/payments"}})
				mu.Lock()
				if err != nil {
					failed = append(failed, err)
				} else {
					acked = append(acked, jti(t, tok.AccessToken))
					if killed {
						afterAck++
					}
				}
				mu.Unlock()
			}
		})
	}
	halt := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer halt()
	defer func() {
		if t.Failed() {
			mu.Lock()
			defer mu.Unlock()
			t.Logf("%d tokens, %d after the kill; failed requests: %v", len(acked), afterAck, errors.Join(failed...))
		}
	}()
	testenv.WaitFor(t, 30*time.Second, "tokens before the kill", func() bool { mu.Lock(); defer mu.Unlock(); return len(acked) >= killAfter })
	if sessions := s.balancer(t)["replica1"].sessions; sessions == 0 {
		t.Fatal("HAProxy sent replica1 no connections: the kill would prove nothing")
	}
	mu.Lock()
	killed = true
	mu.Unlock()
	s.kill(t, 0)
	testenv.WaitFor(t, 60*time.Second, "tokens after the kill", func() bool { mu.Lock(); defer mu.Unlock(); return afterAck >= carryOn })
	halt()
	// Only requests in flight on the killed replica's connections may fail,
	// and only by the connection dropping.
	if len(failed) > 2*workers {
		t.Errorf("%d requests failed across the kill (at most %d in flight): %v", len(failed), 2*workers, errors.Join(failed...))
	}
	for _, err := range failed {
		if !transportFailure(err.Error()) && !strings.Contains(err.Error(), "connection lost") {
			t.Errorf("a request failed other than by the connection dropping: %v", err)
		}
	}
	t.Logf("%d tokens acknowledged, %d after the kill; %d requests failed with the connection", len(acked), afterAck, len(failed))

	s.up(t) // restarts replica 1 on its port
	testenv.WaitFor(t, 10*time.Second, "replica1 back in rotation", func() bool { return s.balancer(t)["replica1"].status == "UP" })
	auditor := s.auditor(t)
	state := filepath.Join(t.TempDir(), "checkpoint")
	for _, r := range s.replicas {
		out, code := s.run("sigil", "audit", "verify", "--server", r, "--auditor", auditor, "--wait", "20s", "--state", state)
		if code != 0 {
			t.Fatalf("audit verify against %s: exit %d\n%s", r, code, out)
		}
	}
	logged := loggedJTIs(t, s.stack)
	var lost []string
	for _, id := range acked {
		if !logged[id] {
			lost = append(lost, id)
		}
	}
	if len(lost) > 0 {
		t.Errorf("%d of %d acknowledged tokens are not in the audit log: %v", len(lost), len(acked), lost)
	}
}

// openWorkload opens the workload enrolled in DIR/name, closed at cleanup.
func openWorkload(t testing.TB, s *stack, name string) *client.Workload {
	t.Helper()
	w, err := client.Open(t.Context(), filepath.Join(s.dir, name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

// bundleClient is an HTTPS client trusting the stack's bundle, without a
// client certificate and without keep-alive.
func bundleClient(t *testing.T, s *stack) *http.Client {
	t.Helper()
	roots := x509.NewCertPool()
	for _, c := range readPEM(t, s.env["SIGIL_CA_BUNDLE"]) {
		roots.AddCert(c)
	}
	tc := &tls.Config{RootCAs: roots}
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: tc, DisableKeepAlives: true}}
}

// status is the HTTP status of GET url, 0 if there was no answer.
func status(t testing.TB, hc *http.Client, url string) int {
	t.Helper()
	resp, err := hc.Get(url)
	if err != nil {
		return 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// jti is a JWT's "jti" claim (the signature is not checked).
func jti(t testing.TB, token string) string {
	t.Helper()
	parts := strings.Split(token, ".")
	var claims struct {
		JTI string `json:"jti"`
	}
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %.20q…", token)
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err == nil {
		err = json.Unmarshal(raw, &claims)
	}
	if err != nil || claims.JTI == "" {
		t.Fatalf("JWT claims: %v (jti %q)", err, claims.JTI)
	}
	return claims.JTI
}

// loggedJTIs exports the audit log (through DIR/sigild.yaml) and returns
// the jti of every token it records issued or exchanged, up to its
// checkpoint.
func loggedJTIs(t *testing.T, s *stack) map[string]bool {
	t.Helper()
	ids := map[string]bool{}
	for _, e := range loggedEntries(t, s) {
		if p, err := e.Payload(); err == nil {
			if tok, ok := p.(*audit.Token); ok && (e.Kind == audit.TokenIssued || e.Kind == audit.TokenExchanged) {
				ids[tok.JTI] = true
			}
		}
	}
	return ids
}

// tcpProxy forwards connections from addr to a target; cut closes them
// all and refuses new ones until restore, which listens on addr again.
type tcpProxy struct {
	t      testing.TB
	addr   string
	target string

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]bool
	wg    sync.WaitGroup
}

func startTCPProxy(t testing.TB, target string) *tcpProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{t: t, addr: ln.Addr().String(), target: target, conns: map[net.Conn]bool{}}
	p.serve(ln)
	t.Cleanup(func() { p.cut(); p.wg.Wait() })
	return p
}

func (p *tcpProxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	p.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.wg.Go(func() { p.forward(c) })
		}
	})
}

func (p *tcpProxy) forward(c net.Conn) {
	u, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		c.Close()
		return
	}
	if !p.track(c, u) {
		return
	}
	done := make(chan struct{}, 2)
	go func() { io.Copy(u, c); done <- struct{}{} }()
	go func() { io.Copy(c, u); done <- struct{}{} }()
	<-done
	c.Close()
	u.Close()
	<-done
}

// track records a forwarded pair, or closes it if the proxy is cut.
func (p *tcpProxy) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln == nil {
		for _, c := range cs {
			c.Close()
		}
		return false
	}
	for _, c := range cs {
		p.conns[c] = true
	}
	return true
}

func (p *tcpProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
	}
}

func (p *tcpProxy) restore() {
	p.t.Helper()
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		p.t.Fatalf("proxy: listen again on %s: %v", p.addr, err)
	}
	p.serve(ln)
}
