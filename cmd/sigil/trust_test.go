package main_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/audit"
	"github.com/sigil-dev/sigil/ca"
	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/testenv"
)

const (
	paymentsID  = "spiffe://sigil.test/workload/payments"
	inventoryID = "spiffe://sigil.test/workload/inventory"
	operatorID  = "spiffe://sigil.test/workload/operator" // in the dev configuration's policy.operators
)

// A change of trust, end to end against sigild and real swtpm hosts:
// orders' host reboots into debug firmware, and its renewal fails
// attestation and revokes its certificate and tokens; an operator's
// what-if names exactly the one host whose option ROM a new policy
// forbids, and the reload revokes exactly that one; a typo that would
// revoke the whole fleet is held (log, /readyz) until `sigild policy
// confirm`.
func TestChangeOfTrustEndToEnd(t *testing.T) {
	s := startStack(t, "3")
	state := func(name string) string { return filepath.Join(s.dir, name) }
	for i, e := range []struct{ id, name string }{{ordersID, "orders"}, {paymentsID, "payments"}, {operatorID, "operator"}} {
		if out, code := s.enroll(i, e.id, state(e.name)); code != 0 {
			t.Fatalf("enroll %s: exit %d\n%s", e.name, code, out)
		}
	}
	rom := filepath.Join(s.dir, "tpm-rom")
	s.swtpm(t, "start", rom)
	t.Cleanup(func() { exec.Command(filepath.Join(s.root, "testenv", "swtpm.sh"), "stop", rom).Run() })
	s.swtpm(t, "boot", rom, "oprom")
	if out, code := s.run("sigil", "enroll", "--tpm", s.swtpm(t, "addr", rom), "--event-log", filepath.Join(rom, "eventlog.bin"),
		"--identity", inventoryID, "--state", state("inventory")); code != 0 {
		t.Fatalf("enroll inventory on the option ROM host: exit %d\n%s", code, out)
	}

	t.Run("failed re-attestation revokes", func(t *testing.T) {
		tok := s.token(t, "orders", paymentsID)
		chain := readPEM(t, filepath.Join(state("orders"), "cert.pem"))
		s.swtpm(t, "reboot", filepath.Join(s.dir, "tpm1"), "debug")
		out, code := s.run("sigil", "renew", "--state", state("orders"))
		if code != 3 || !strings.Contains(out, `"no-debug-firmware"`) || !strings.Contains(out, "certificates were revoked ("+store.ReasonAttestationFailed+")") {
			t.Fatalf("renewal after a debug boot: exit %d, want 3 naming the forbid and the revocation\n%s", code, out)
		}
		if out, _ := s.run("sigil", "introspect", "--state", state("payments"), tok); !strings.Contains(out, `"active": false`) {
			t.Errorf("orders' token after the failed renewal:\n%s", out)
		}
		if out, code := s.run("sigil", "token", "--state", state("orders"), "--audience", paymentsID); code == 0 {
			t.Errorf("sigild issued a token to the distrusted host:\n%s", out)
		}
		checkRevokedLogged(t, s, store.ReasonAttestationFailed, `"no-debug-firmware"`, 1)
		distributedCRL(t, s, chain[1], ca.ReasonPrivilegeWithdrawn, chain[0])
		// An auditor re-verifies offline that the revocation rests on the
		// host's own quote.
		out, code = s.run("sigil", "audit", "verify", "--dir", exportLog(t, s), "--key", s.env["SIGIL_AUDIT_KEY"], "--ek-roots", s.env["SIGIL_EK_ROOTS"], "--state", filepath.Join(t.TempDir(), "checkpoint"))
		if code != 0 || !strings.Contains(out, "1 refusals that revoked") {
			t.Errorf("audit verify: exit %d\n%s", code, out)
		}
	})

	candidate := t.TempDir()
	copyDir(t, s.env["SIGIL_POLICY_DIR"], candidate)
	romRule := `@id("no-option-rom-2.1")
forbid (principal is Sigil::Device, action, resource)
when { principal.event_digests.contains("` + testenv.OptionROMDigest + `") };
`
	writeFile(t, filepath.Join(candidate, "oprom.cedar"), romRule)

	t.Run("what-if names exactly the device a policy would revoke", func(t *testing.T) {
		out, code := s.run("sigil", "policy", "what-if", "--state", state("operator"), candidate)
		if code != 0 || !strings.Contains(out, "would revoke 1 certificates of 1 devices") || !strings.Contains(out, inventoryID) ||
			strings.Contains(out, paymentsID) || strings.Contains(out, "HELD") {
			t.Fatalf("what-if: exit %d\n%s", code, out)
		}
		if out, code := s.run("sigil", "policy", "what-if", "--state", state("payments"), candidate); code == 0 || !strings.Contains(out, "not in policy.operators") {
			t.Errorf("what-if by an identity not in policy.operators: exit %d\n%s", code, out)
		}
		if out, _ := s.run("sigil", "token", "--state", state("inventory"), "--audience", paymentsID); strings.Contains(out, "error") {
			t.Errorf("what-if changed something: inventory refused a token\n%s", out)
		}
	})

	t.Run("the reload revokes exactly that device", func(t *testing.T) {
		writeFile(t, filepath.Join(s.env["SIGIL_POLICY_DIR"], "oprom.cedar"), romRule)
		s.hup(t)
		testenv.WaitFor(t, 10*time.Second, "the reload to revoke inventory", func() bool {
			_, code := s.run("sigil", "token", "--state", state("inventory"), "--audience", paymentsID)
			return code != 0
		})
		if out, code := s.run("sigil", "token", "--state", state("payments"), "--audience", operatorID); code != 0 {
			t.Errorf("payments, not hit by the new policy, refused a token: exit %d\n%s", code, out)
		}
		checkRevokedLogged(t, s, store.ReasonPolicyChanged, `"no-option-rom-2.1"`, 1)
	})

	t.Run("a reload revoking most of the fleet is held until confirmed", func(t *testing.T) {
		writeFile(t, filepath.Join(s.env["SIGIL_POLICY_DIR"], "typo.cedar"), `@id("typo")
forbid (principal is Sigil::Device, action, resource) when { principal.secure_boot };
`)
		s.hup(t)
		var held string
		testenv.WaitFor(t, 10*time.Second, "/readyz to report the held policy set", func() bool {
			held = s.readyBody(t)
			return strings.Contains(held, "policy_held: sha256:")
		})
		version := regexp.MustCompile(`policy_held: (sha256:[0-9a-f]{64})`).FindStringSubmatch(held)[1]
		if m := string(stackGet(t, s, s.env["SIGIL_SERVER"]+"/metrics")); !strings.Contains(m, `sigil_policy_held{version="`+version+`"} 1`) {
			t.Error("/metrics does not export sigil_policy_held for the held set")
		}
		if out, code := s.run("sigil", "token", "--state", state("payments"), "--audience", operatorID); code != 0 {
			t.Fatalf("a held set revoked payments: exit %d\n%s", code, out)
		}
		if log, _ := os.ReadFile(filepath.Join(s.dir, "sigild.log")); !strings.Contains(string(log), "policy set HELD") {
			t.Error("sigild did not log the hold")
		}
		out, code := s.run("sigild", "--config", filepath.Join(s.dir, "sigild.yaml"), "policy", "confirm", version)
		if code != 0 || !strings.Contains(out, "revoked 2 certificates") {
			t.Fatalf("policy confirm: exit %d\n%s", code, out)
		}
		testenv.WaitFor(t, 10*time.Second, "the confirmed set to take effect", func() bool {
			return strings.Contains(s.readyBody(t), "policy_version: "+version) && !strings.Contains(s.readyBody(t), "policy_held")
		})
		if _, code := s.run("sigil", "token", "--state", state("payments"), "--audience", operatorID); code == 0 {
			t.Error("payments still gets tokens after the confirmed set revoked it")
		}
	})
}

// swtpm runs testenv/swtpm.sh with the stack's EK CA and returns its
// output.
func (s *stack) swtpm(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(filepath.Join(s.root, "testenv", "swtpm.sh"), args...)
	cmd.Env = append(os.Environ(), "SWTPM_EKCA_DIR="+filepath.Join(s.dir, "ekca"))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("swtpm.sh %v: %v", args, err)
	}
	return strings.TrimSpace(string(out))
}

// token has the workload in state ask for a token for aud.
func (s *stack) token(t *testing.T, name, aud string) string {
	t.Helper()
	out, code := s.runBinary("sigil", "token", "--state", filepath.Join(s.dir, name), "--audience", aud)
	if code != 0 {
		t.Fatalf("token for %s: exit %d", name, code)
	}
	return strings.TrimSpace(out)
}

// hup makes sigild reload its policy directory.
func (s *stack) hup(t testing.TB) {
	t.Helper()
	if err := syscall.Kill(readPID(t, filepath.Join(s.dir, "sigild.pid")), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
}

// readyBody is the body of sigild's /readyz.
func (s *stack) readyBody(t *testing.T) string {
	t.Helper()
	return string(stackGet(t, s, s.env["SIGIL_SERVER"]+"/readyz"))
}

// checkRevokedLogged waits for the checkpointed log to hold n
// certificate.revoked entries with reason whose decision names decision.
func checkRevokedLogged(t *testing.T, s *stack, reason, decision string, n int) {
	t.Helper()
	testenv.WaitFor(t, 10*time.Second, "the revocations in the checkpointed audit log", func() bool {
		got := 0
		for _, e := range loggedEntries(t, s) {
			if e.Kind != audit.CertificateRevoked {
				continue
			}
			p, err := e.Payload()
			if err != nil {
				t.Fatal(err)
			}
			c := p.(*audit.Certificate)
			if c.Reason == reason && strings.Contains(c.Decision, decision) && c.EvidenceDigest != "" {
				got++
			}
		}
		return got == n
	})
}
