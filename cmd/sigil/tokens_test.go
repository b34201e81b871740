package main_test

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

// A user token from the demo IdP starts a delegation chain through three
// workloads on three TPMs: scopes narrow, act nests, tokens are bound to the
// caller's certificate, widening is refused, and revoking the first exchange
// deactivates everything derived from it.
func TestDelegationEndToEnd(t *testing.T) {
	s := startStack(t, "3")
	names := []string{"frontend", "orders", "payments"}
	for i, n := range names {
		if out, code := s.enroll(i, "spiffe://sigil.test/workload/"+n, filepath.Join(s.dir, n)); code != 0 {
			t.Fatalf("enroll %s: %s", n, out)
		}
	}
	state := func(n string) string { return filepath.Join(s.dir, n) }
	user, code := s.runBinary("demoidp", "token", s.env["SIGIL_IDP_DIR"], "-sub", "alice",
		"-aud", "spiffe://sigil.test/workload/frontend", "-scope", "orders:read orders:write payments:charge")
	if code != 0 {
		t.Fatalf("demoidp: %s", user)
	}
	exchange := func(from, subject, to, scope string) (string, int) {
		out, code := s.run("sigil", "exchange", "--state", state(from), "--subject-token", strings.TrimSpace(subject),
			"--audience", "spiffe://sigil.test/workload/"+to, "--scope", scope)
		return strings.TrimSpace(out), code
	}
	t1, code := exchange("frontend", user, "orders", "orders:read payments:charge")
	if code != 0 {
		t.Fatalf("frontend → orders: %s", t1)
	}
	t2, code := exchange("orders", t1, "payments", "payments:charge")
	if code != 0 {
		t.Fatalf("orders → payments: %s", t2)
	}
	info := introspect(t, s, "payments", t2)
	act, _ := json.Marshal(info["act"])
	if info["active"] != true || info["sub"] != "alice" || info["scope"] != "payments:charge" ||
		string(act) != `{"act":{"sub":"spiffe://sigil.test/workload/frontend"},"sub":"spiffe://sigil.test/workload/orders"}` ||
		info["cnf"] == nil {
		t.Fatalf("introspection of the chain's last token: %v", info)
	}

	if out, code := exchange("orders", t1, "payments", "orders:write"); code == 0 || !strings.Contains(out, "invalid_scope") {
		t.Errorf("widening: exit %d %s, want invalid_scope", code, out)
	}
	if out, code := exchange("payments", t1, "frontend", "orders:read"); code == 0 || !strings.Contains(out, "invalid_grant") {
		t.Errorf("exchange by a party outside the subject token's audience: exit %d %s, want invalid_grant", code, out)
	}
	if out, code := s.run("sigil", "introspect", "--state", state("frontend"), t2); code == 0 && strings.Contains(out, `"active": true`) {
		t.Errorf("a party outside the token's audience introspected it: %s", out)
	}

	if out, code := s.run("sigil", "revoke", "--state", state("frontend"), t1); code != 0 {
		t.Fatalf("revoke: %s", out)
	}
	if info := introspect(t, s, "payments", t2); info["active"] != false {
		t.Fatalf("token derived from a revoked one is still active: %v", info)
	}
	if out, code := exchange("orders", t1, "payments", "payments:charge"); code == 0 || !strings.Contains(out, "revoked") {
		t.Errorf("exchange of a revoked token: exit %d %s", code, out)
	}
}

func introspect(t *testing.T, s *stack, as, token string) map[string]any {
	t.Helper()
	out, code := s.run("sigil", "introspect", "--state", filepath.Join(s.dir, as), token)
	if code != 0 {
		t.Fatalf("introspect: %s", out)
	}
	var info map[string]any
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		t.Fatalf("introspect output: %v\n%s", err, out)
	}
	return info
}
