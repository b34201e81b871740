package main_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/client"
	"github.com/sigil-dev/sigil/testenv"
)

// TestShowcase runs make demo's topology: frontend → orders → payments
// (examples/showcase), each an enrolled workload on its own TPM built on the
// client and verify libraries, plus a fourth host that steals a token and
// is then disabled under traffic, and a fifth that inspects its tokens.
func TestShowcase(t *testing.T) {
	s := startStack(t, "5")
	id := func(n string) string { return "spiffe://sigil.test/workload/" + n }
	for i, n := range []string{"frontend", "orders", "payments", "reports", "inspector"} {
		addr, log := s.tpm(i)
		if out, code := s.run("sigil", "enroll", "--server-auth", "--tpm", addr, "--event-log", log,
			"--identity", id(n), "--state", filepath.Join(s.dir, n)); code != 0 {
			t.Fatalf("enroll %s: %s", n, out)
		}
	}
	user := s.userToken(t, "frontend", "orders:read orders:write payments:charge")
	stolen, code := s.runBinary("sigil", "token", "--state", filepath.Join(s.dir, "orders"),
		"--audience", id("payments"), "--scope", "payments:charge")
	if code != 0 {
		t.Fatalf("sigil token: %s", stolen)
	}
	payments := s.serve(t, "payments", "")
	orders := s.serve(t, "orders", payments)
	frontend := s.serve(t, "frontend", orders)

	call := func(args ...string) (string, int) {
		return s.run("showcase", append([]string{"call", "--ca-bundle", s.env["SIGIL_CA_BUNDLE"]}, args...)...)
	}
	checkout := func() (string, int) {
		return call("--url", "https://"+frontend+"/checkout", "--id", id("frontend"), "--token", user)
	}

	out, code := checkout()
	if code != 0 || !strings.Contains(out, `"act":["`+id("orders")+`","`+id("frontend")+`"]`) ||
		!strings.Contains(out, `"for":"alice"`) || !strings.Contains(out, `"scope":["payments:charge"]`) {
		t.Fatalf("checkout (exit %d): %s", code, out)
	}

	t.Run("stolen token from another host", func(t *testing.T) {
		out, code := s.run("showcase", "call", "--state", filepath.Join(s.dir, "reports"),
			"--url", "https://"+payments+"/charge", "--id", id("payments"), "--token", strings.TrimSpace(stolen))
		if code == 0 || !strings.Contains(out, "401") || !strings.Contains(out, `error="invalid_token"`) {
			t.Errorf("stolen token (exit %d): %s", code, out)
		}
		out, code = call("--url", "https://"+payments+"/charge", "--id", id("payments"), "--token", strings.TrimSpace(stolen))
		if code == 0 || !strings.Contains(out, "certificate required") {
			t.Errorf("no client certificate (exit %d): %s", code, out)
		}
	})

	t.Run("logout stops the chain", func(t *testing.T) {
		if out, code := call("--url", "https://"+frontend+"/logout", "--id", id("frontend"), "--token", user); code != 0 {
			t.Fatalf("logout (exit %d): %s", code, out)
		}
		out, code := checkout()
		if code == 0 || !strings.Contains(out, "403") || !strings.Contains(out, "subject_token has been revoked") {
			t.Errorf("checkout after logout (exit %d): %s", code, out)
		}
	})

	t.Run("disabled device under traffic", func(t *testing.T) { disableUnderTraffic(t, s, payments, orders) })

	s.awaitCheckpointed(t)
	if out, code := s.run("sigil", "audit", "verify", "--auditor", s.auditor(t), "--state", filepath.Join(s.dir, "auditor.checkpoint")); code != 0 {
		t.Fatalf("audit verify: %s", out)
	}
}

// serve starts the showcase service role, calling next, and returns its
// address; the test's cleanup stops it.
func (s *stack) serve(t *testing.T, role, next string) string {
	t.Helper()
	return s.serveWith(t, filepath.Join(s.bin, "showcase"), role, next, "--state", filepath.Join(s.dir, role))
}

// serveWith is serve for the showcase program prog, getting its identity as
// source says (--state DIR or --agent SOCKET).
func (s *stack) serveWith(t *testing.T, prog, role, next string, source ...string) string {
	t.Helper()
	ready := filepath.Join(s.dir, role+".addr")
	args := append([]string{"serve", "--role", role, "--ready", ready}, source...)
	if next != "" {
		args = append(args, "--next", "https://"+next)
	}
	cmd := exec.Command(prog, args...)
	logf, err := os.Create(filepath.Join(s.dir, role+".log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		logf.Close()
	})
	var addr []byte
	testenv.WaitForNil(t, 10*time.Second, role+" to start", func() error {
		var err error
		if addr, err = os.ReadFile(ready); err == nil && len(addr) == 0 {
			err = errors.New("empty address file")
		}
		if err != nil {
			log, _ := os.ReadFile(filepath.Join(s.dir, role+".log"))
			return fmt.Errorf("%w; log:\n%s", err, log)
		}
		return nil
	})
	return strings.TrimSpace(string(addr))
}

// awaitCheckpointed waits until the latest checkpoint covers every audit
// entry, reading entries as the stack's auditor.
func (s *stack) awaitCheckpointed(t *testing.T) {
	t.Helper()
	w, err := client.Open(t.Context(), s.auditor(t))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	src := w.AuditSource("")
	testenv.WaitFor(t, 10*time.Second, "a checkpoint covering the last audit entries", func() bool {
		covered, err := src.Covered(t.Context())
		if err != nil {
			t.Fatalf("audit: %v", err)
		}
		return covered
	})
}
