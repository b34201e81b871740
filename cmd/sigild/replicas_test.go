package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.step.sm/crypto/pemutil"

	"github.com/sigil-dev/sigil/audit"
	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/internal/store/backend"
	"github.com/sigil-dev/sigil/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

var (
	buildOnce sync.Once
	binary    string
	buildErr  error
)

// build builds sigild once per test binary.
func build(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "sigild-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binary = filepath.Join(dir, "sigild")
		if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
			buildErr = errors.New(string(out))
		}
	})
	if buildErr != nil {
		t.Fatalf("build sigild: %v", buildErr)
	}
	return binary
}

// process is a sigild replica in a process of its own.
type process struct {
	url    string
	cmd    *exec.Cmd
	client *http.Client
}

// freePort returns a loopback port free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// writeConfig writes a replica's configuration: the shared HSM token
// (through p11-kit) and database, a port of its own.
func writeConfig(t *testing.T, dir, hsmURI, dsn string, port int) string {
	t.Helper()
	policy, err := filepath.Abs(filepath.Join("..", "..", "testenv", "policy"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`listen: 127.0.0.1:%d
trust_domain: sigil.test
store: %q
hsm:
  uri: %q
tls:
  ip_addresses: [127.0.0.1]
attestation:
  ek_allow: [%s]
policy:
  dir: %q
audit:
  checkpoint_interval: 100ms
  anchor: %q
`, port, dsn, hsmURI, strings.Repeat("ab", 32), policy, filepath.Join(dir, fmt.Sprintf("sigild-%d.anchor", port)))
	path := filepath.Join(dir, fmt.Sprintf("sigild-%d.yaml", port))
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// start runs `sigild --config cfg` until the test ends and waits for it
// to be ready.
func start(t *testing.T, bin, cfg string, port int, roots *x509.CertPool) *process {
	t.Helper()
	cmd := exec.Command(bin, "--config", cfg)
	logf, err := os.Create(cfg + ".log")
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &process{url: fmt.Sprintf("https://127.0.0.1:%d", port), cmd: cmd,
		client: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGCONT)
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(cfg + ".log")
			t.Logf("%s log:\n%s", cfg, b)
		}
	})
	testenv.WaitFor(t, 60*time.Second, "sigild on port "+strconv.Itoa(port)+" to be ready", func() bool {
		status, _, err := p.get("/readyz")
		return err == nil && status == http.StatusOK
	})
	return p
}

func (p *process) get(path string) (int, string, error) {
	resp, err := p.client.Get(p.url + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// leading reads sigil_audit_checkpoint_leader; -1 if unreadable.
func (p *process) leading() float64 {
	_, body, err := p.get("/metrics")
	if err != nil {
		return -1
	}
	for line := range strings.Lines(body) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "sigil_audit_checkpoint_leader "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return -1
}

// TestPausedPublisherNeverForks runs two sigild processes on one
// PostgreSQL database and one SoftHSM token shared through p11-kit. The
// replica signing checkpoints is paused (SIGSTOP) past its lease: the
// other takes over and checkpoints the new entries; resumed (SIGCONT), the
// old one follows and signs nothing that forks: every stored checkpoint is
// consistent with the next (consistency proofs), and both serve the same
// latest checkpoint.
func TestPausedPublisherNeverForks(t *testing.T) {
	bin := build(t)
	tok := testenv.SoftHSM(t)
	p11 := testenv.P11KitServer(t, tok)
	dsn := testenv.PostgresDB(t)
	dir := t.TempDir()
	ports := []int{freePort(t), freePort(t)}
	cfgs := []string{writeConfig(t, dir, p11.URI, dsn, ports[0]), writeConfig(t, dir, p11.URI, dsn, ports[1])}
	// Each replica runs init before it serves; the second joins a database
	// the first has signed checkpoints of.
	if out, err := exec.Command(bin, "init", "--config", cfgs[0]).CombinedOutput(); err != nil {
		t.Fatalf("sigild init: %v\n%s", err, out)
	}
	pem, err := exec.Command(bin, "bundle", "--config", cfgs[0]).Output()
	if err != nil {
		t.Fatalf("sigild bundle: %v", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		t.Fatal("sigild bundle: no certificate")
	}
	st, err := backend.Open(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	a := start(t, bin, cfgs[0], ports[0], roots)
	appendAndCheckpoint(t, st, 1)
	if out, err := exec.Command(bin, "init", "--config", cfgs[1]).CombinedOutput(); err != nil || !strings.Contains(string(out), "joins the shared database") {
		t.Fatalf("sigild init of the second replica: %v\n%s", err, out)
	}
	b := start(t, bin, cfgs[1], ports[1], roots)
	appendAndCheckpoint(t, st, 3)
	leader, follower := a, b
	if a.leading() != 1 {
		leader, follower = b, a
	}
	if leader.leading() != 1 || follower.leading() != 0 {
		t.Fatalf("leader metrics: %v and %v, want one leader", a.leading(), b.leading())
	}
	if err := leader.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	paused := time.Now()
	size := appendAndCheckpoint(t, st, 3)
	t.Logf("paused the leader; the other checkpointed size %d after %v", size, time.Since(paused).Round(time.Millisecond))
	if follower.leading() != 1 {
		t.Fatal("the other replica did not take the lease")
	}
	if err := leader.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	size = appendAndCheckpoint(t, st, 3)
	testenv.WaitFor(t, 20*time.Second, "the resumed replica to follow and serve the latest checkpoint", func() bool {
		_, na, errA := leader.get("/v1/audit/checkpoint")
		_, nb, errB := follower.get("/v1/audit/checkpoint")
		return errA == nil && errB == nil && na == nb && strings.Contains(na, "\n"+strconv.FormatUint(size, 10)+"\n") && leader.leading() == 0
	})
	keyPEM, err := exec.Command(bin, "audit", "key", "--config", cfgs[0]).Output()
	if err != nil {
		t.Fatalf("sigild audit key: %v", err)
	}
	pub, err := pemutil.Parse(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	origin, err := audit.Origin("sigil.test", pub)
	if err != nil {
		t.Fatal(err)
	}
	v, err := audit.NewVerifier(origin, pub)
	if err != nil {
		t.Fatal(err)
	}
	checkNoFork(t, st, v)
}

// appendAndCheckpoint appends n entries, as requests to any replica would,
// and waits for a stored checkpoint to cover them.
func appendAndCheckpoint(t *testing.T, st store.Store, n int) uint64 {
	t.Helper()
	for i := range n {
		if err := store.RecordAudit(t.Context(), st, audit.PolicyLoaded, audit.Policy{Version: fmt.Sprintf("test-%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	size, err := st.AuditSize(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 30*time.Second, "a checkpoint of every entry", func() bool {
		cps, err := st.Checkpoints(t.Context())
		return err == nil && len(cps) > 0 && cps[len(cps)-1].Size == size
	})
	return size
}

// checkNoFork checks each stored checkpoint is consistent with the next.
func checkNoFork(t *testing.T, st store.Store, v *audit.Verifier) {
	t.Helper()
	ctx := context.Background()
	cps, err := st.Checkpoints(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var prevSize uint64
	var prevRoot []byte
	for _, c := range cps {
		cp, err := audit.OpenCheckpoint(c.Note, v)
		if err != nil {
			t.Fatal(err)
		}
		if prevRoot != nil {
			proof, err := audit.ConsistencyProof(ctx, store.AuditStorage(st), prevSize, cp.Size)
			if err != nil {
				t.Fatal(err)
			}
			if err := audit.VerifyConsistency(prevSize, cp.Size, proof, prevRoot, cp.Hash); err != nil {
				t.Fatalf("checkpoints %d and %d fork: %v", prevSize, cp.Size, err)
			}
		}
		prevSize, prevRoot = cp.Size, cp.Hash
	}
	t.Logf("%d stored checkpoints, each consistent with the next", len(cps))
}
