package main_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/client"
	"github.com/sigil-dev/sigil/internal/agent"
	"github.com/sigil-dev/sigil/testenv"
)

// hostAgent is a running `sigil agent --host` of a stack.
type hostAgent struct {
	s      *stack
	socket string
	cmd    *exec.Cmd
	log    string
}

// startHostAgent starts the host agent on the stack's TPM 0, its socket in
// the world-searchable directory pub.
func startHostAgent(t *testing.T, s *stack, pub string) *hostAgent {
	t.Helper()
	a := &hostAgent{s: s, socket: filepath.Join(pub, "agent.sock"), log: filepath.Join(s.dir, "host-agent.log")}
	a.start(t)
	return a
}

func (a *hostAgent) start(t testing.TB) {
	t.Helper()
	addr, eventLog := a.s.tpm(0)
	logf, err := os.OpenFile(a.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(filepath.Join(a.s.bin, "sigil"), "agent", "--host", "--socket", a.socket,
		"--tpm", addr, "--event-log", eventLog)
	cmd.Env = os.Environ()
	for k, v := range a.s.env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	a.cmd = cmd
	t.Cleanup(func() { a.stop(syscall.SIGTERM) })
	testenv.WaitFor(t, 30*time.Second, "the host agent to serve "+a.socket, func() bool {
		c, err := net.Dial("unix", a.socket)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

// stop signals the agent (by its pid) and waits for it.
func (a *hostAgent) stop(sig syscall.Signal) {
	if a.cmd == nil {
		return
	}
	_ = a.cmd.Process.Signal(sig)
	_ = a.cmd.Wait()
	a.cmd = nil
}

func (a *hostAgent) logText(t *testing.T) string {
	t.Helper()
	data, _ := os.ReadFile(a.log)
	return string(data)
}

// publicDir is a directory every uid may search, for the agent's socket
// and the workload programs (t.TempDir is its owner's only).
func publicDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "sigil-host-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// sigil agent --host refuses options that do not make a host agent, before
// it touches the TPM, and says which.
func TestHostAgentRefusesBadOptions(t *testing.T) {
	t.Parallel()
	bin := buildCLI(t)
	bundle := filepath.Join(t.TempDir(), "bundle.pem")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no socket", []string{"--server", "https://127.0.0.1:1", "--ca-bundle", bundle}, "needs --socket, --server and --ca-bundle"},
		{"one workload's options", []string{"--socket", "s", "--server", "https://127.0.0.1:1", "--ca-bundle", bundle, "--out", "o"}, "--state, --out, --ingress and --egress belong to one workload's agent"},
		{"neither host nor state", nil, "sigil agent needs --state and --out (or --host)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"agent"}, tt.args...)
			if tt.args != nil {
				args = append([]string{"agent", "--host"}, tt.args...)
			}
			cmd := exec.Command(filepath.Join(bin, "sigil"), args...)
			cmd.Env = append(os.Environ(), "SIGIL_SERVER=", "SIGIL_CA_BUNDLE=")
			out, _ := cmd.CombinedOutput()
			if code := cmd.ProcessState.ExitCode(); code != 1 || !strings.Contains(string(out), tt.want) {
				t.Errorf("exit %d: %s\nwant exit 1 and %q", code, out, tt.want)
			}
		})
	}
}

// TestShowcaseOneHost runs the showcase's three services on one host (one
// TPM) through one host agent: each gets its identity as the program of its
// name, and a checkout runs through all three with the delegation chain.
func TestShowcaseOneHost(t *testing.T) {
	s := startStack(t, "1")
	pub := publicDir(t)
	a := startHostAgent(t, s, pub)
	prog := func(name string) string { return programOf(t, filepath.Join(s.bin, "showcase"), pub, name) }
	payments := s.serveWith(t, prog("payments"), "payments", "", "--agent", a.socket)
	orders := s.serveWith(t, prog("orders"), "orders", payments, "--agent", a.socket)
	frontend := s.serveWith(t, prog("frontend"), "frontend", orders, "--agent", a.socket)
	id := func(n string) string { return "spiffe://sigil.test/workload/" + n }
	user := s.userToken(t, "frontend", "orders:read orders:write payments:charge")
	out, code := s.run("showcase", "call", "--ca-bundle", s.env["SIGIL_CA_BUNDLE"],
		"--url", "https://"+frontend+"/checkout", "--id", id("frontend"), "--token", user)
	if code != 0 || !strings.Contains(out, `"act":["`+id("orders")+`","`+id("frontend")+`"]`) || !strings.Contains(out, `"for":"alice"`) {
		t.Fatalf("checkout through three services on one host (exit %d): %s\nagent log:\n%s", code, out, a.logText(t))
	}
}

// program copies bin/sigil to dir/name, world-executable, so that the
// agent sees a process running that executable.
func program(t *testing.T, s *stack, dir, name string) string {
	t.Helper()
	return programOf(t, filepath.Join(s.bin, "sigil"), dir, name)
}

// programOf copies the program at src to dir/name, world-executable.
func programOf(t *testing.T, src, dir, name string) string {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// runAs runs a program copy, as uid/gid if uid >= 0.
func runAs(t *testing.T, prog string, uid int, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(prog, args...)
	cmd.Dir = "/"
	if uid >= 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}}
	}
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		return string(out), exit.ExitCode()
	case err != nil:
		t.Fatalf("%s: %v", prog, err)
	}
	return string(out), 0
}

// TestHostAgent runs many workloads of one host through one agent on one
// TPM: ten identities enroll and renew concurrently through client's agent
// mode while they fetch tokens; the program an identity is held for gets
// it, an impostor program or another uid is refused with a readable
// reason (the agent's, or sigild's policy decision); killing the agent
// and starting it again loses nothing.
func TestHostAgent(t *testing.T) {
	s := startStack(t, "1")
	pub := publicDir(t)
	a := startHostAgent(t, s, pub)
	ctx := t.Context()

	t.Run("ten workloads enroll and renew concurrently under traffic", func(t *testing.T) {
		const n = 10
		clients := make([]*client.Client, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				clients[i], errs[i] = client.New(ctx, client.Config{Agent: a.socket, Identity: fmt.Sprintf("spiffe://sigil.test/workload/svc%d", i)})
			})
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("workload %d through the agent: %v\nagent log:\n%s", i, err, a.logText(t))
			}
			t.Cleanup(func() { clients[i].Close() })
		}
		first := make([]string, n)
		for i, c := range clients {
			first[i] = c.Workload().State().Chain[0].SerialNumber.Text(16)
		}
		for i := range n {
			c := clients[i]
			wg.Go(func() { _, errs[i] = c.Renew(ctx) })
			wg.Go(func() {
				// Traffic: a token over mTLS with the TPM key, signed
				// through the agent, while the renewals run.
				if _, err := c.Workload().Token(ctx, client.TokenRequest{Audience: []string{"spiffe://sigil.test/workload/svc0"}}); err != nil {
					t.Errorf("token for svc%d under renewal: %v", i, err)
				}
			})
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("renew svc%d through the agent: %v", i, err)
			}
			if got := clients[i].Workload().State().Chain[0].SerialNumber.Text(16); got == first[i] {
				t.Errorf("svc%d kept certificate %s after renewing", i, got)
			}
		}
	})

	t.Run("token service on the agent's socket", func(t *testing.T) {
		hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", a.socket)
		}}}
		post := func(identity string) (int, string) {
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://agent/v1/token",
				strings.NewReader(`{"audience":"spiffe://sigil.test/workload/svc1"}`))
			if identity != "" {
				req.Header.Set("Sigil-Identity", identity)
			}
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, string(body)
		}
		if code, body := post("spiffe://sigil.test/workload/svc0"); code != http.StatusOK || !strings.Contains(body, `"access_token"`) {
			t.Errorf("token for svc0 through the agent's socket: %d %s", code, body)
		}
		if code, body := post(""); code != http.StatusBadRequest || !strings.Contains(body, "holds 10 identities here; name one in the Sigil-Identity header") {
			t.Errorf("token without naming one of ten identities: %d %s", code, body)
		}
	})

	progs := pub
	payments := program(t, s, progs, "payments")
	impostor := program(t, s, progs, "impostor")
	svid := func(t *testing.T, prog string, uid int, id string, extra ...string) (string, int) {
		return runAs(t, prog, uid, append([]string{"svid", "--agent", a.socket, "--identity", "spiffe://sigil.test/workload/" + id}, extra...)...)
	}
	out, code := svid(t, payments, -1, "payments", "--out", filepath.Join(s.dir, "payments-out"))
	if code != 0 {
		t.Fatalf("payments through the agent: exit %d\n%s\nagent log:\n%s", code, out, a.logText(t))
	}
	serial := serialOf(t, out)
	key, err := os.ReadFile(filepath.Join(s.dir, "payments-out", agent.KeyFile))
	if err != nil || !strings.Contains(string(key), "TSS2 PRIVATE KEY") {
		t.Errorf("the workload's key is not a TSS2 blob (%v):\n%.80s", err, key)
	}

	refusals := []struct {
		name    string
		prog    string
		uid     int
		id      string
		root    bool // needs root to run as another uid
		code    int
		contain []string
	}{
		{"impostor program for a held identity", impostor, -1, "payments", false, 1,
			[]string{"spiffe://sigil.test/workload/payments is held on this host for uid 0 running " + payments, "running " + impostor}},
		{"impostor program for a new identity", impostor, -1, "orders", false, 3,
			[]string{`denied by forbid policy "host-agent-program-names-identity"`}},
		{"another uid for a held identity", payments, 65534, "payments", true, 1,
			[]string{"held on this host for uid 0", "this process is uid 65534"}},
		{"another uid for a new identity", payments, 65534, "reports", true, 3,
			[]string{`denied by forbid policy "host-agent-not-nobody"`}},
	}
	for _, tc := range refusals {
		t.Run(tc.name, func(t *testing.T) {
			if tc.root && os.Geteuid() != 0 {
				t.Skip("running a process as another uid needs root")
			}
			out, code := svid(t, tc.prog, tc.uid, tc.id)
			if code != tc.code {
				t.Errorf("exit %d, want %d\n%s", code, tc.code, out)
			}
			for _, want := range tc.contain {
				if !strings.Contains(out, want) {
					t.Errorf("refusal does not say %q:\n%s", want, out)
				}
			}
		})
	}

	t.Run("kill and restart loses nothing", func(t *testing.T) {
		a.stop(syscall.SIGKILL)
		a.start(t)
		out, code := svid(t, payments, -1, "payments")
		if code != 0 || serialOf(t, out) != serial {
			t.Fatalf("payments after the agent's restart: exit %d, want its certificate %s again\n%s", code, serial, out)
		}
		out, code = svid(t, payments, -1, "payments", "--renew")
		if code != 0 || serialOf(t, out) == serial {
			t.Fatalf("renew payments after the agent's restart: exit %d\n%s\nagent log:\n%s", code, out, a.logText(t))
		}
		if !strings.Contains(a.logText(t), "identity resumed") {
			t.Error("the restarted agent did not log resuming its identities")
		}
	})

	t.Run("facts are in the audit log as the agent's", func(t *testing.T) {
		testenv.WaitFor(t, 30*time.Second, "the enrollment through the agent to be logged with its facts", func() bool {
			for _, e := range loggedEntries(t, s) {
				d := string(e.Data)
				if e.Kind == "device.enrolled" && strings.Contains(d, `"asserted_by":"host-agent"`) && strings.Contains(d, payments) {
					return true
				}
			}
			return false
		})
	})
}

// serialOf reads "certificate serial S" from sigil's report.
func serialOf(t *testing.T, out string) string {
	t.Helper()
	_, rest, ok := strings.Cut(out, "certificate serial ")
	if !ok {
		t.Fatalf("no serial in:\n%s", out)
	}
	return strings.Fields(rest)[0]
}
