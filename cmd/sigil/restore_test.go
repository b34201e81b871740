package main_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/testenv"
)

// The attack of issue 11 §2 on the dev stack, run as an operator would:
// sigild is stopped, a copy of its SQLite file from before a revocation is
// put back, and sigild started. It refuses to serve until `sigild restore
// acknowledge`; `sigild restore reapply --from EXPORT` makes the revoked
// token inactive again, and the audit log still verifies.
func TestRestoreEndToEnd(t *testing.T) {
	s := startStack(t, "1")
	state := func(n string) string { return filepath.Join(s.dir, n) }
	for _, n := range []string{"orders", "payments"} {
		if out, code := s.enroll(0, "spiffe://sigil.test/workload/"+n, state(n)); code != 0 {
			t.Fatalf("enroll %s: %s", n, out)
		}
	}
	tok, code := s.run("sigil", "token", "--state", state("orders"), "--audience", "spiffe://sigil.test/workload/payments")
	if code != 0 {
		t.Fatalf("token: %s", tok)
	}
	tok = strings.TrimSpace(tok)
	db, snapshot := filepath.Join(s.dir, "sigil.db"), filepath.Join(t.TempDir(), "sigil.db")
	s.stopSigild(t)
	copyFile(t, db, snapshot)
	s.startSigild(t)

	if out, code := s.run("sigil", "revoke", "--state", state("orders"), tok); code != 0 {
		t.Fatalf("revoke: %s", out)
	}
	if info := introspect(t, s, "payments", tok); info["active"] != false {
		t.Fatalf("revoked token active: %v", info)
	}
	export := filepath.Join(t.TempDir(), "export")
	sigild := func(args ...string) (string, int) {
		return s.run("sigild", append([]string{"--config", filepath.Join(s.dir, "sigild.yaml")}, args...)...)
	}
	s.stopSigild(t) // it signs a checkpoint of everything, which the export holds
	if out, code := sigild("audit", "export", export); code != 0 {
		t.Fatalf("export: %s", out)
	}
	for _, suffix := range []string{"-wal", "-shm"} {
		if err := os.Remove(db + suffix); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
	}
	copyFile(t, snapshot, db)
	if out, code := s.serveOnce(t); code == 0 || !strings.Contains(out, "restore acknowledge") {
		t.Fatalf("sigild on a restored database: exit %d, want a refusal that says what to do:\n%s", code, out)
	}

	if out, code := sigild("restore", "acknowledge", "--reason", "restored last night's backup"); code != 0 || !strings.Contains(out, "feed epoch") {
		t.Fatalf("restore acknowledge: exit %d\n%s", code, out)
	}
	if out, code := sigild("restore", "reapply", "--from", export); code != 0 || !strings.Contains(out, "re-applied: 0 certificates, 1 tokens") {
		t.Fatalf("restore reapply: exit %d\n%s", code, out)
	}
	if out, code := sigild("restore", "reapply", "--from", export); code != 0 || !strings.Contains(out, "re-applied: 0 certificates, 0 tokens; already revoked: 1") {
		t.Errorf("a second reapply: exit %d\n%s", code, out)
	}
	s.startSigild(t)
	if info := introspect(t, s, "payments", tok); info["active"] != false {
		t.Errorf("the token revoked before the restore is active after reapply: %v", info)
	}
	out, code := s.run("sigil", "audit", "verify", "--auditor", s.auditor(t), "--state", filepath.Join(t.TempDir(), "state"), "--wait", "10s")
	if code != 0 || !strings.Contains(out, "restore.acknowledged") {
		t.Errorf("audit verify after the restore: exit %d\n%s", code, out)
	}
}

// stopSigild stops sigild (SIGTERM: it signs a last checkpoint and
// anchors it) and waits until it is gone.
func (s *stack) stopSigild(t *testing.T) {
	t.Helper()
	pid := readPID(t, filepath.Join(s.dir, "sigild.pid"))
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 15*time.Second, "sigild to stop", func() bool { return syscall.Kill(pid, 0) != nil })
}

// startSigild starts sigild again on its configuration (its port, so its
// issuer, unchanged), stopped by down.sh, and waits until it is ready.
func (s *stack) startSigild(t *testing.T) {
	t.Helper()
	log, err := os.OpenFile(filepath.Join(s.dir, "sigild.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	cmd := s.sigild(context.Background()) // down.sh stops it
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	writeFile(t, filepath.Join(s.dir, "sigild.pid"), strconv.Itoa(cmd.Process.Pid))
	ready := func() error {
		select {
		case err := <-exited:
			exited <- err
			out, _ := os.ReadFile(filepath.Join(s.dir, "sigild.log"))
			return fmt.Errorf("sigild exited: %v\n%s", err, out)
		default:
		}
		return s.readyz()
	}
	testenv.WaitForNil(t, 15*time.Second, "sigild ready", ready)
}

// serveOnce runs sigild on its configuration and returns its output and
// exit code once it exits; one that still serves after 15 s is a failure.
func (s *stack) serveOnce(t *testing.T) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	out, err := s.sigild(ctx).CombinedOutput()
	var exit *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("sigild served on a restored database:\n%s", out)
	case errors.As(err, &exit):
		return string(out), exit.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return string(out), 0
}

// sigild is the command that serves the stack's sigild, with its
// environment (the HSM's configuration).
func (s *stack) sigild(ctx context.Context) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(s.bin, "sigild"), "--config", filepath.Join(s.dir, "sigild.yaml"), "serve")
	cmd.Env = os.Environ()
	for k, v := range s.env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	return cmd
}

// readyz asks sigild's /readyz.
func (s *stack) readyz() error {
	pool := x509.NewCertPool()
	bundle, err := os.ReadFile(s.env["SIGIL_CA_BUNDLE"])
	if err != nil || !pool.AppendCertsFromPEM(bundle) {
		return fmt.Errorf("read the CA bundle: %v", err)
	}
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := c.Get(s.env["SIGIL_SERVER"] + "/readyz")
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("readyz: %s", resp.Status)
	}
	return nil
}
