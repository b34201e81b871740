package testenv_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-attestation/attest"
	"github.com/sigil-dev/sigil/testenv"
	"github.com/sigil-dev/sigil/tpm"
)

// TestSWTPMScript drives testenv/swtpm.sh as the demo does.
func TestSWTPMScript(t *testing.T) {
	t.Parallel()
	testenv.RequireSWTPM(t)
	dir := t.TempDir()
	run := func(args ...string) (string, error) {
		cmd := exec.Command("./swtpm.sh", args...)
		out, err := cmd.Output()
		if ee, ok := err.(*exec.ExitError); ok {
			err = fmt.Errorf("%w: %s", err, ee.Stderr)
		}
		return strings.TrimSpace(string(out)), err
	}
	t.Cleanup(func() { _, _ = run("stop", dir) })

	addr, err := run("start", dir)
	if err != nil || !regexp.MustCompile(`^swtpm:127\.0\.0\.1:\d+$`).MatchString(addr) {
		t.Fatalf("start: %q, %v", addr, err)
	}
	for _, args := range [][]string{{"start", dir}, {"addr", dir}} {
		if again, err := run(args...); err != nil || again != addr {
			t.Fatalf("%s again: %q, %v; want %q", args[0], again, err, addr)
		}
	}
	for i := range 2 { // boot twice: the second is a no-op
		if _, err := run("boot", dir); err != nil {
			t.Fatalf("boot %d: %v", i, err)
		}
	}
	log, err := os.ReadFile(filepath.Join(dir, "eventlog.bin"))
	if err != nil || !bytes.Equal(log, testenv.DevMeasurements().Log()) {
		t.Fatalf("eventlog.bin is not the dev measurements' log: %v", err)
	}
	checkBooted(t, addr, filepath.Join(dir, "eventlog.bin"), filepath.Join(dir, "ek-ca.pem"))

	pid, err := os.ReadFile(filepath.Join(dir, "swtpm.pid"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if _, err := run("stop", dir); err != nil {
			t.Fatalf("stop %d: %v", i, err)
		}
	}
	if n, _ := strconv.Atoi(strings.TrimSpace(string(pid))); running(n) {
		t.Errorf("swtpm %d still runs after stop", n)
	}
	if out, err := run("addr", dir); err == nil {
		t.Errorf("addr after stop: %q", out)
	}
}

// checkBooted quotes the TPM and replays the event log against it, and checks
// the EK certificate was issued by the CA in caPath.
func checkBooted(t *testing.T, addr, logPath, caPath string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tt, err := tpm.Open(ctx, addr, tpm.WithEventLog(logPath))
	if err != nil {
		t.Fatal(err)
	}
	defer tt.Close()
	ak, err := tt.NewAK(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p, err := ak.Quote(ctx, []byte("nonce"))
	if err != nil {
		t.Fatal(err)
	}
	el, err := attest.ParseEventLog(p.EventLog)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := el.Verify(p.PCRs); err != nil {
		t.Errorf("event log does not replay: %v", err)
	}
	eks, err := tt.EKs(ctx)
	if err != nil || len(eks) < 2 {
		t.Fatalf("EKs: %d, %v", len(eks), err)
	}
	b, err := os.ReadFile(caPath)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatalf("%s: no PEM", caPath)
	}
	ca, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	for _, ek := range eks {
		if err := ek.Certificate.CheckSignatureFrom(ca); err != nil {
			t.Errorf("EK certificate not from ek-ca.pem: %v", err)
		}
	}
}

// running reports whether process pid exists and has not exited: a zombie,
// exited but not yet reaped by its parent (init, for swtpm.sh's), has.
func running(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	rest := stat[bytes.LastIndexByte(stat, ')')+1:] // after the command's name
	return !bytes.HasPrefix(bytes.TrimSpace(rest), []byte("Z"))
}
