package main_test

import (
	"encoding/base64"
	"encoding/json"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/testenv"
)

// A user token from the demo IdP starts a delegation chain through three
// workloads on three TPMs: scopes narrow, act nests, tokens are bound to the
// caller's certificate, widening is refused, revoking the first exchange
// deactivates everything derived from it, and revoking the user's token
// everything derived from that.
func TestDelegationEndToEnd(t *testing.T) {
	s := startStack(t, "3")
	names := []string{"frontend", "orders", "payments"}
	for i, n := range names {
		if out, code := s.enroll(i, "spiffe://sigil.test/workload/"+n, filepath.Join(s.dir, n)); code != 0 {
			t.Fatalf("enroll %s: %s", n, out)
		}
	}
	state := func(n string) string { return filepath.Join(s.dir, n) }
	user := s.userToken(t, "frontend", "orders:read orders:write payments:charge")
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

	if out, code := exchange("orders", t1, "payments", "orders:write"); code != 3 || !strings.Contains(out, "invalid_scope") {
		t.Errorf("widening: exit %d %s, want 3 (refused) with invalid_scope", code, out)
	}
	if out, code := exchange("payments", t1, "frontend", "orders:read"); code == 0 || !strings.Contains(out, "invalid_request") {
		t.Errorf("exchange by a party outside the subject token's audience: exit %d %s, want invalid_request", code, out)
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

	// Revoking the user's token stops every chain started from it: only
	// a party in its audience (the frontend) may.
	t3, code := exchange("frontend", user, "orders", "orders:read")
	if code != 0 {
		t.Fatalf("frontend → orders again: %s", t3)
	}
	t4, code := exchange("orders", t3, "payments", "orders:read")
	if code != 0 {
		t.Fatalf("orders → payments again: %s", t4)
	}
	if out, code := s.run("sigil", "revoke", "--state", state("orders"), strings.TrimSpace(user)); code == 0 || !strings.Contains(out, "unauthorized_client") {
		t.Errorf("revocation of the user token by orders: exit %d %s, want unauthorized_client", code, out)
	}
	if info := introspect(t, s, "payments", t4); info["active"] != true {
		t.Fatalf("chain inactive after a refused revocation: %v", info)
	}
	if out, code := s.run("sigil", "revoke", "--state", state("frontend"), strings.TrimSpace(user)); code != 0 {
		t.Fatalf("revocation of the user token by the frontend: %s", out)
	}
	for as, tok := range map[string]string{"orders": t3, "payments": t4} {
		if info := introspect(t, s, as, tok); info["active"] != false {
			t.Errorf("token exchanged from the revoked user token is still active for %s: %v", as, info)
		}
	}
	if out, code := exchange("frontend", user, "orders", "orders:read"); code == 0 || !strings.Contains(out, "revoked") {
		t.Errorf("exchange of the revoked user token: exit %d %s", code, out)
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

// Rotating the token key under a running sigild (sigild key rotate; sigil
// hsm rotate says it moved there) publishes the new key in JWKS at once,
// keeps signing with the old one for the lead time, and leaves tokens
// issued before the rotation valid; sigild key list shows every HSM key.
func TestTokenKeyRotation(t *testing.T) {
	s := startStack(t, "1")
	if out, code := s.enroll(0, "spiffe://sigil.test/workload/frontend", filepath.Join(s.dir, "frontend")); code != 0 {
		t.Fatalf("enroll: %s", out)
	}
	token := func() string {
		out, code := s.run("sigil", "token", "--state", filepath.Join(s.dir, "frontend"), "--audience", "spiffe://sigil.test/workload/frontend")
		if code != 0 {
			t.Fatalf("token: %s", out)
		}
		return strings.TrimSpace(out)
	}
	before := token()
	config := filepath.Join(s.dir, "sigild.yaml")
	if out, code := s.run("sigil", "hsm", "rotate", "--purpose", "token", "--config", config); code != 2 || !strings.Contains(out, "sigild --config FILE key rotate") {
		t.Fatalf("sigil hsm rotate: exit %d %s; want exit 2 pointing to sigild", code, out)
	}
	if out, code := s.run("sigild", "--config", config, "key", "rotate"); code != 0 || !strings.Contains(out, "sigil-token.v2") {
		t.Fatalf("rotate: exit %d %s", code, out)
	}
	syscall.Kill(readPID(t, filepath.Join(s.dir, "sigild.pid")), syscall.SIGHUP)
	testenv.WaitFor(t, 10*time.Second, "two keys in the JWKS", func() bool { return len(jwksKIDs(t, s)) == 2 })
	after := token()
	if kid(t, after) != kid(t, before) {
		t.Error("the new key signs before its lead time")
	}
	for _, tok := range []string{before, after} {
		if info := introspect(t, s, "frontend", tok); info["active"] != true {
			t.Errorf("token inactive across a rotation: %v", info)
		}
	}
	out, _ := s.run("sigild", "--config", config, "key", "list")
	for _, label := range []string{"sigil-root.v1", "sigil-issuer.v1", "sigil-tls.v1", "sigil-audit.v1", "sigil-token.v1", "sigil-token.v2"} {
		if !strings.Contains(out, label) {
			t.Errorf("key list has no %s:\n%s", label, out)
		}
	}
}

func jwksKIDs(t *testing.T, s *stack) []string {
	t.Helper()
	var set struct {
		Keys []struct {
			KID string `json:"kid"`
		} `json:"keys"`
	}
	getJSON(t, s, "/jwks.json", &set)
	var kids []string
	for _, k := range set.Keys {
		kids = append(kids, k.KID)
	}
	return kids
}

// kid returns the kid header of a compact JWS.
func kid(t *testing.T, token string) string {
	t.Helper()
	header, _, _ := strings.Cut(token, ".")
	raw, err := base64.RawURLEncoding.DecodeString(header)
	if err != nil {
		t.Fatal(err)
	}
	var h struct {
		KID string `json:"kid"`
	}
	if err := json.Unmarshal(raw, &h); err != nil {
		t.Fatal(err)
	}
	return h.KID
}
