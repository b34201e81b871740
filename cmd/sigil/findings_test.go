package main_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/sigil-dev/sigil/audit"
)

// TestSmallFindingsEndToEnd replays the smaller findings of the outside
// security test (issue 11 §6) against the dev stack, each as the attack.
func TestSmallFindingsEndToEnd(t *testing.T) {
	s := startStack(t, "2")
	orders := "spiffe://sigil.test/workload/orders"
	if out, code := s.enroll(0, orders, filepath.Join(s.dir, "orders")); code != 0 {
		t.Fatalf("enroll: %s", out)
	}

	t.Run("identity-held-by-another-device", func(t *testing.T) {
		out, code := s.enroll(1, orders, filepath.Join(s.dir, "impostor"))
		if code != 3 || !strings.Contains(out, `denied by forbid policy "one-device-per-identity"`) {
			t.Fatalf("a second TPM enrolling as %s: exit %d, want 3 naming the forbid\n%s", orders, code, out)
		}
	})

	t.Run("identity-beyond-the-spiffe-limit", func(t *testing.T) {
		long := "spiffe://sigil.test/workload/" + strings.Repeat("a", 3000-len("spiffe://sigil.test/workload/"))
		out, code := s.enroll(1, long, filepath.Join(s.dir, "long"))
		if code == 0 || !strings.Contains(out, "3000 bytes, longer than 2048") {
			t.Fatalf("enrolling a 3000-byte identity: exit %d, want a refusal naming the limit\n%.500s", code, out)
		}
		if _, err := os.Stat(filepath.Join(s.dir, "long", "cert.pem")); err == nil {
			t.Fatal("a certificate was issued for the 3000-byte identity")
		}
	})

	t.Run("issuer-is-the-server-url", func(t *testing.T) {
		var meta struct {
			Issuer string `json:"issuer"`
		}
		getJSON(t, s, "/.well-known/oauth-authorization-server", &meta)
		if meta.Issuer != s.env["SIGIL_SERVER"] {
			t.Fatalf("metadata issuer %q, SIGIL_SERVER %q: RFC 8414 §3.3 clients refuse the difference", meta.Issuer, s.env["SIGIL_SERVER"])
		}
	})

	t.Run("token-errors-tell-what-to-change", func(t *testing.T) {
		out, code := s.run("sigil", "token", "--state", filepath.Join(s.dir, "orders"), "--audience", "https://evil.example")
		if code == 0 || !strings.Contains(out, `invalid_target`) || !strings.Contains(out, `policy denies a token for audience "https://evil.example": no policy permits it`) {
			t.Fatalf("token for an audience policy refuses: exit %d\n%s", code, out)
		}
		if strings.Contains(out, "sha256:") || strings.Contains(out, "evaluated") {
			t.Fatalf("error_description names how policy decided:\n%s", out)
		}
	})

	t.Run("policy-loaded-counts-the-policies", func(t *testing.T) {
		want := 0
		files, _ := filepath.Glob(filepath.Join(s.env["SIGIL_POLICY_DIR"], "*.cedar"))
		for _, f := range files {
			want += len(regexp.MustCompile(`(?m)^@id\(`).FindAll(readFileT(t, f), -1))
		}
		dir := exportLog(t, s)
		entries, err := audit.DirSource(dir).Entries(t.Context(), 0, checkpointSize(t, dir))
		if err != nil {
			t.Fatal(err)
		}
		loaded := 0
		for _, raw := range entries {
			e, err := audit.Decode(raw)
			if err != nil || e.Kind != audit.PolicyLoaded {
				continue
			}
			loaded++
			p, err := e.Payload()
			if got, ok := p.(*audit.Policy); err != nil || !ok || got.Policies != want || want == 0 {
				t.Fatalf("policy.loaded records %+v (%v), want the %d policies in %s", p, err, want, s.env["SIGIL_POLICY_DIR"])
			}
		}
		if loaded == 0 {
			t.Fatal("no policy.loaded entry in the log")
		}
	})
}
