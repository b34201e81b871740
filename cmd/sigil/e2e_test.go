package main_test

import (
	"bufio"
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"go.step.sm/crypto/keyutil"

	"github.com/sigil-dev/sigil/ca"
	"github.com/sigil-dev/sigil/testenv"
)

// stack is the dev stack (testenv/up.sh) run from freshly built binaries.
type stack struct {
	t    testing.TB
	root string // repository root
	bin  string
	dir  string
	env  map[string]string
	// auditorState is the state of the stack's audit reader, once
	// enrolled (auditor).
	auditorState string
	// upArgs are up.sh's options after DIR, to run it again (restart).
	upArgs []string
}

// auditorID is the identity the dev configuration lets read audit entries.
const auditorID = "spiffe://sigil.test/workload/auditor"

// auditor enrolls auditorID on the last TPM, once, and returns its state
// directory, for `sigil audit verify --auditor`. A TPM serves one
// connection at a time: the auditor's must not be one a running service
// holds (TestShowcase's services run on the first three).
func (s *stack) auditor(t testing.TB) string {
	t.Helper()
	if s.auditorState == "" {
		state := filepath.Join(s.dir, "auditor")
		if out, code := s.enroll(len(strings.Fields(s.env["SIGIL_TPMS"]))-1, auditorID, state); code != 0 {
			t.Fatalf("enroll the auditor: %s", out)
		}
		s.auditorState = state
	}
	return s.auditorState
}

func startStack(t testing.TB, tpms string) *stack {
	t.Helper()
	return startStackArgs(t, "--tpms", tpms)
}

// startStackArgs runs up.sh with options args (--tpms N, --replicas R).
func startStackArgs(t testing.TB, args ...string) *stack {
	t.Helper()
	testenv.RequireSWTPM(t)
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	s := &stack{t: t, root: root, bin: buildCLI(t), dir: t.TempDir(), upArgs: args}
	t.Cleanup(func() {
		if out, err := s.script("down.sh", s.dir); err != nil {
			t.Errorf("down.sh: %v\n%s", err, out)
		}
	})
	s.up(t)
	return s
}

// up runs up.sh, which starts what is not running, and rereads DIR/env.
func (s *stack) up(t testing.TB) {
	t.Helper()
	if out, err := s.script("up.sh", append([]string{s.dir}, s.upArgs...)...); err != nil {
		logs, _ := filepath.Glob(filepath.Join(s.dir, "*", "sigild.log"))
		var b strings.Builder
		for _, l := range append([]string{filepath.Join(s.dir, "sigild.log")}, logs...) {
			if raw, err := os.ReadFile(l); err == nil {
				fmt.Fprintf(&b, "%s:\n%s\n", l, raw)
			}
		}
		t.Fatalf("up.sh: %v\n%s\n%s", err, out, b.String())
	}
	s.env = readEnv(t, filepath.Join(s.dir, "env"))
}

func (s *stack) script(name string, args ...string) ([]byte, error) {
	cmd := exec.Command(filepath.Join(s.root, "testenv", name), args...)
	cmd.Env = append(os.Environ(), "SIGIL_BIN="+s.bin)
	return cmd.CombinedOutput()
}

// runBinary is run, for a binary whose stderr is not part of its answer.
func (s *stack) runBinary(name string, args ...string) (string, int) {
	s.t.Helper()
	cmd := exec.Command(filepath.Join(s.bin, name), args...)
	out, err := cmd.Output()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return string(out), exit.ExitCode()
	}
	if err != nil {
		s.t.Fatalf("%s: %v", name, err)
	}
	return string(out), 0
}

// run runs bin/NAME with the stack's environment and returns its output and
// exit code.
func (s *stack) run(name string, args ...string) (string, int) {
	s.t.Helper()
	cmd := exec.Command(filepath.Join(s.bin, name), args...)
	cmd.Env = os.Environ()
	for k, v := range s.env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		return string(out), exit.ExitCode()
	case err != nil:
		s.t.Fatalf("%s: %v", name, err)
	}
	return string(out), 0
}

func (s *stack) tpm(i int) (addr, eventLog string) {
	return strings.Fields(s.env["SIGIL_TPMS"])[i], strings.Fields(s.env["SIGIL_EVENT_LOGS"])[i]
}

func (s *stack) enroll(i int, id, state string) (string, int) {
	addr, log := s.tpm(i)
	return s.run("sigil", "enroll", "--tpm", addr, "--event-log", log, "--identity", id, "--state", state)
}

func readEnv(t testing.TB, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimPrefix(sc.Text(), "export "), "=")
		if ok {
			env[k] = strings.Trim(v, "'")
		}
	}
	return env
}

func TestEnrollRenewRevokeEndToEnd(t *testing.T) {
	s := startStack(t, "2")
	state := filepath.Join(s.dir, "orders")

	out, code := s.enroll(0, "spiffe://sigil.test/workload/orders", state)
	if code != 0 || !strings.Contains(out, "enrolled spiffe://sigil.test/workload/orders") {
		t.Fatalf("enroll: exit %d\n%s", code, out)
	}
	first := checkSVID(t, s, state, "spiffe://sigil.test/workload/orders")
	opensslVerify(t, s, state)

	t.Run("nested-identity-denied", func(t *testing.T) {
		out, code := s.enroll(1, "spiffe://sigil.test/workload/orders/admin", filepath.Join(s.dir, "admin"))
		if code != 3 || !strings.Contains(out, "policy denied spiffe://sigil.test/workload/orders/admin: no policy permits") {
			t.Fatalf("exit %d, want 3 with the denial\n%s", code, out)
		}
	})
	t.Run("debug-firmware-denied", func(t *testing.T) {
		tpmDir := filepath.Join(s.dir, "tpm-debug")
		cmd := exec.Command(filepath.Join(s.root, "testenv", "swtpm.sh"), "start", tpmDir)
		cmd.Env = append(os.Environ(), "SWTPM_EKCA_DIR="+filepath.Join(s.dir, "ekca"))
		addr, err := cmd.Output()
		if err != nil {
			t.Fatalf("swtpm.sh start: %v", err)
		}
		t.Cleanup(func() { exec.Command(filepath.Join(s.root, "testenv", "swtpm.sh"), "stop", tpmDir).Run() })
		if out, err := exec.Command(filepath.Join(s.root, "testenv", "swtpm.sh"), "boot", tpmDir, "debug").CombinedOutput(); err != nil {
			t.Fatalf("boot: %v\n%s", err, out)
		}
		out, code := s.run("sigil", "enroll", "--tpm", strings.TrimSpace(string(addr)), "--event-log", filepath.Join(tpmDir, "eventlog.bin"),
			"--identity", "spiffe://sigil.test/workload/payments", "--state", filepath.Join(s.dir, "payments"))
		if code != 3 || !strings.Contains(out, `denied by forbid policy "no-debug-firmware"`) {
			t.Fatalf("exit %d, want 3 naming the forbid\n%s", code, out)
		}
	})

	t.Run("policy-reload", func(t *testing.T) { policyReload(t, s) })

	out, code = s.run("sigil", "renew", "--state", state)
	if code != 0 {
		t.Fatalf("renew: exit %d\n%s", code, out)
	}
	renewed := checkSVID(t, s, state, "spiffe://sigil.test/workload/orders")
	if renewed.SerialNumber.Cmp(first.SerialNumber) == 0 || !keyutil.Equal(renewed.PublicKey, first.PublicKey) {
		t.Fatal("renewal must give a new certificate for the same TPM key")
	}
	t.Run("federation", func(t *testing.T) { checkFederation(t, s, state) })

	// The renewal superseded the first certificate: the operator revokes
	// it for that reason, then disables the device, which revokes the rest.
	serial := first.SerialNumber.Text(16)
	out, code = s.run("sigild", "--config", filepath.Join(s.dir, "sigild.yaml"), "certificate", "revoke", "--reason", "superseded", serial)
	if code != 0 || !strings.Contains(out, "certificate "+serial+" revoked (superseded)") {
		t.Fatalf("certificate revoke: exit %d\n%s", code, out)
	}
	devices, _ := s.run("sigild", "--config", filepath.Join(s.dir, "sigild.yaml"), "device", "list")
	ek := deviceEK(t, devices)
	out, code = s.run("sigild", "--config", filepath.Join(s.dir, "sigild.yaml"), "device", "disable", ek)
	if code != 0 || !strings.Contains(out, "1 certificates revoked") {
		t.Fatalf("disable: exit %d\n%s", code, out)
	}
	out, code = s.run("sigil", "renew", "--state", state)
	if code == 0 || !strings.Contains(out, "revoked") {
		t.Fatalf("renewal of a disabled device's certificate: exit %d\n%s", code, out)
	}
	// Fetched at once from where the certificates say: a disabled device
	// is out of service (cessationOfOperation).
	issuer := readPEM(t, filepath.Join(state, "cert.pem"))[1]
	distributedCRL(t, s, issuer, ca.ReasonCessationOfOperation, renewed)
	distributedCRL(t, s, issuer, ca.ReasonSuperseded, first)
}

// checkSVID loads the state's certificate chain and verifies it as an
// X.509-SVID for id against the stack's bundle, with go-spiffe.
func checkSVID(t *testing.T, s *stack, state, id string) *x509.Certificate {
	t.Helper()
	chain := readPEM(t, filepath.Join(state, "cert.pem"))
	roots := readPEM(t, s.env["SIGIL_CA_BUNDLE"])
	bundle := x509bundle.FromX509Authorities(spiffeid.RequireTrustDomainFromString("sigil.test"), roots)
	got, _, err := x509svid.Verify(chain, bundle)
	if err != nil {
		t.Fatalf("go-spiffe rejects the SVID: %v", err)
	}
	if got.String() != id {
		t.Fatalf("SVID is %s, want %s", got, id)
	}
	return chain[0]
}

func opensslVerify(t *testing.T, s *stack, state string) {
	t.Helper()
	chain := readPEM(t, filepath.Join(state, "cert.pem"))
	issuer := filepath.Join(t.TempDir(), "issuer.pem")
	if err := os.WriteFile(issuer, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: chain[1].Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("openssl", "verify", "-purpose", "sslclient", "-CAfile", s.env["SIGIL_CA_BUNDLE"],
		"-untrusted", issuer, filepath.Join(state, "cert.pem")).CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte(": OK")) {
		t.Fatalf("openssl verify: %v\n%s", err, out)
	}
}

func readPEM(t testing.TB, path string) []*x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []*x509.Certificate
	for b, rest := pem.Decode(data); b != nil; b, rest = pem.Decode(rest) {
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	return out
}

// deviceEK returns the EK hash of the one device `sigild device list` shows.
func deviceEK(t *testing.T, list string) string {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(list), "\n")
	if len(lines) != 2 {
		t.Fatalf("want one device, got:\n%s", list)
	}
	return strings.Fields(lines[1])[0]
}

// policyReload changes the policy directory under a running sigild and sends
// SIGHUP: a new forbid takes effect; a broken file is rejected and the
// previous set stays active.
func policyReload(t *testing.T, s *stack) {
	dir := s.env["SIGIL_POLICY_DIR"]
	pid := readPID(t, filepath.Join(s.dir, "sigild.pid"))
	freeze := filepath.Join(dir, "freeze.cedar")
	writeFile(t, freeze, `@id("freeze-blocked")
forbid (principal, action == Sigil::Action::"enroll", resource)
when { resource.path == "/workload/blocked" };
`)
	syscall.Kill(pid, syscall.SIGHUP)
	var out string
	var code int
	// SIGHUP is handled asynchronously.
	testenv.WaitFor(t, 10*time.Second, "the reloaded policy to refuse the enrollment", func() bool {
		out, code = s.enroll(1, "spiffe://sigil.test/workload/blocked", filepath.Join(s.dir, "blocked"))
		return code == 3
	})
	if !strings.Contains(out, `"freeze-blocked"`) {
		t.Fatalf("after reload: exit %d, want 3 naming freeze-blocked\n%s", code, out)
	}
	writeFile(t, filepath.Join(dir, "broken.cedar"), "permit (principal, action, resource) when {")
	syscall.Kill(pid, syscall.SIGHUP)
	testenv.WaitFor(t, 10*time.Second, "sigild to log the rejected policy set", func() bool {
		log, _ := os.ReadFile(filepath.Join(s.dir, "sigild.log"))
		return strings.Contains(string(log), "policy set rejected, keeping the active one")
	})
	out, code = s.enroll(1, "spiffe://sigil.test/workload/blocked", filepath.Join(s.dir, "blocked"))
	if code != 3 || !strings.Contains(out, `"freeze-blocked"`) {
		t.Fatalf("a broken policy file replaced the active set: exit %d\n%s", code, out)
	}
	os.Remove(filepath.Join(dir, "broken.cedar"))
	os.Remove(freeze)
	syscall.Kill(pid, syscall.SIGHUP)
}

// userToken is a token of the demo IdP for alice, for the workload aud,
// valid for an hour.
func (s *stack) userToken(tb testing.TB, aud, scope string) string {
	tb.Helper()
	out, code := s.runBinary("demoidp", "token", s.env["SIGIL_IDP_DIR"], "-sub", "alice",
		"-aud", "spiffe://sigil.test/workload/"+aud, "-scope", scope, "-ttl", "1h")
	if code != 0 {
		tb.Fatalf("demoidp: %s", out)
	}
	return strings.TrimSpace(out)
}

func readPID(t testing.TB, path string) int {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// writeFile replaces path atomically, so a watching sigild never reads half
// a policy.
func writeFile(t testing.TB, path, content string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}
