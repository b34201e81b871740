package main_test

import (
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/client"
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
	copyFileTo(t, db, snapshot)
	s.restartSigild(t, "orders", "payments")

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
	copyFileTo(t, snapshot, db)
	if out, err := s.script("up.sh", s.dir, "--tpms", "1"); err == nil {
		t.Fatalf("sigild served a restored database:\n%s", out)
	}
	if log, _ := os.ReadFile(filepath.Join(s.dir, "sigild.log")); !strings.Contains(string(log), "restore acknowledge") {
		t.Errorf("sigild's refusal does not say what to do:\n%s", log)
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
	s.restartSigild(t, "orders", "payments")
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

// restartSigild starts sigild again (up.sh) and points the named
// workloads' states at its new address.
func (s *stack) restartSigild(t *testing.T, names ...string) {
	t.Helper()
	if out, err := s.script("up.sh", s.dir, "--tpms", "1"); err != nil {
		log, _ := os.ReadFile(filepath.Join(s.dir, "sigild.log"))
		t.Fatalf("restart: %v\n%s\nsigild.log:\n%s", err, out, log)
	}
	s.env = readEnv(t, filepath.Join(s.dir, "env"))
	for _, n := range names {
		path := filepath.Join(s.dir, n, client.StateFile)
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var st map[string]any
		if err := json.Unmarshal(data, &st); err != nil {
			t.Fatal(err)
		}
		st["server"] = s.env["SIGIL_SERVER"]
		if data, err = json.Marshal(st); err != nil {
			t.Fatal(err)
		}
		writeFile(t, path, string(data))
	}
}

func copyFileTo(t *testing.T, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}
