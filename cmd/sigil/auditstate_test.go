package main_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sigil-dev/sigil/audit"
)

// runWithState runs sigil with XDG_STATE_HOME=home, so that audit verify
// keeps its default state there.
func runWithState(t *testing.T, bin, home string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(filepath.Join(bin, "sigil"), args...)
	cmd.Env = append(os.Environ(), "XDG_STATE_HOME="+home)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		return string(out), exit.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return string(out), 0
}

// An auditor's second run reads only the entries added since its state's
// checkpoint, and still catches a tampered new entry and a forked tree
// (re-running in full to say which); --full reads everything.
func TestAuditVerifyIncremental(t *testing.T) {
	t.Parallel()
	bin := buildCLI(t)
	dir := t.TempDir()
	signer, pub := softSigner(t, "")
	keyPEM := filepath.Join(dir, "audit-key.pem")
	writePublicKey(t, keyPEM, pub)
	ekRoots, _ := filepath.Abs("../../attest/testdata/ek-ca.pem")
	verify := func(export, state string, extra ...string) (string, int) {
		args := append([]string{"audit", "verify", "--dir", export, "--key", keyPEM, "--ek-roots", ekRoots, "--state", state}, extra...)
		return runBin(t, bin, args...)
	}
	first := buildLog(t, signer, policyEntries("v1", "v2", "v3"))
	grown := buildLog(t, signer, policyEntries("v1", "v2", "v3", "v4", "v5"))
	seen := func(t *testing.T) string {
		state := filepath.Join(t.TempDir(), "state")
		if out, code := verify(first, state); code != 0 {
			t.Fatalf("first run: %s", out)
		}
		return state
	}

	t.Run("reads-only-new-entries", func(t *testing.T) {
		state := seen(t)
		out, code := verify(grown, state)
		if code != 0 || !strings.Contains(out, "2 read (incremental: from 3") {
			t.Fatalf("exit %d, want 2 entries read from 3:\n%s", code, out)
		}
		if out, code := verify(grown, state, "--full"); code != 0 || !strings.Contains(out, "entries:      5 read\n") {
			t.Fatalf("--full: exit %d, want all 5 entries read:\n%s", code, out)
		}
	})
	t.Run("tampered-new-entry", func(t *testing.T) {
		state := seen(t)
		before := readFileT(t, state)
		bad := filepath.Join(t.TempDir(), "export")
		copyDir(t, grown, bad)
		editEntries(t, bad, func(lines []string) []string {
			lines[4] = strings.Replace(lines[4], "v5", "v6", 1)
			return lines
		})
		out, code := verify(bad, state)
		if code != 1 || !strings.Contains(out, "do not hash to") || !strings.Contains(out, "first bad entry: 3") {
			t.Fatalf("exit %d, want entries 3.. refused:\n%s", code, out)
		}
		if string(readFileT(t, state)) != string(before) {
			t.Error("a failed run moved the state")
		}
	})
	t.Run("forked-tree", func(t *testing.T) {
		state := seen(t)
		fork := buildLog(t, signer, policyEntries("v1", "vX", "v3", "v4"))
		out, code := verify(fork, state)
		if code != 1 || !strings.Contains(out, "fork") || !strings.Contains(out, "in full") {
			t.Fatalf("exit %d, want a fork found by the full re-run:\n%s", code, out)
		}
	})
}

// Two dev stacks, each with its own audit key: by default each log has its
// own origin (derived from its key), so one auditor verifies both, each
// with its own state. Two logs that do share an origin (configured
// audit.origin) under two keys are reported as exactly that.
func TestAuditVerifySecondDevStack(t *testing.T) {
	t.Parallel()
	bin := buildCLI(t)
	home, dir := t.TempDir(), t.TempDir()
	ekRoots, _ := filepath.Abs("../../attest/testdata/ek-ca.pem")
	stack := func(name, origin string) (export, key string) {
		signer, pub := softSigner(t, origin)
		key = filepath.Join(dir, name+".pem")
		writePublicKey(t, key, pub)
		return buildLog(t, signer, policyEntries(name+"1", name+"2")), key
	}
	verify := func(export, key string, extra ...string) (string, int) {
		args := append([]string{"audit", "verify", "--dir", export, "--key", key, "--ek-roots", ekRoots}, extra...)
		return runWithState(t, bin, home, args...)
	}

	a, keyA := stack("a", "")
	b, keyB := stack("b", "")
	for _, s := range [][2]string{{a, keyA}, {b, keyB}, {a, keyA}, {b, keyB}} {
		if out, code := verify(s[0], s[1]); code != 0 || !strings.Contains(out, "sigil.test/"+audit.OriginPath+"/") {
			t.Fatalf("exit %d:\n%s", code, out)
		}
	}
	states, _ := filepath.Glob(filepath.Join(home, "sigil", "audit", "*", "*.state"))
	if len(states) != 2 {
		t.Fatalf("state files %v, want one per log", states)
	}

	const shared = "sigil.test/sigil-audit"
	c, keyC := stack("c", shared)
	d, keyD := stack("d", shared)
	if out, code := verify(c, keyC, "--origin", shared); code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	out, code := verify(d, keyD, "--origin", shared)
	if code != 1 || !strings.Contains(out, "known origin under a new key") || !strings.Contains(out, "confirm the new key out of band") {
		t.Fatalf("exit %d, want the origin reported as known under another key:\n%s", code, out)
	}
	// The same with the state given: the file names the origin's old key.
	state := filepath.Join(dir, "c.state")
	if out, code := verify(c, keyC, "--origin", shared, "--state", state); code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	out, code = verify(d, keyD, "--origin", shared, "--state", state)
	if code != 1 || !strings.Contains(out, "known origin under a new key") {
		t.Fatalf("exit %d, want the origin reported as known under another key:\n%s", code, out)
	}
}

// The new user: two dev stacks (up.sh), each with its own fresh
// audit key, audited by one user with the default state directory. Each
// log has its own origin, so each gets its own state, and auditing one
// again is incremental; before, both were sigil.test/sigil-audit and the
// second failed with "unusable state file …: checkpoint not signed by the
// log key".
func TestAuditVerifyTwoDevStacks(t *testing.T) {
	home := t.TempDir()
	stacks := []*stack{startStack(t, "1"), startStack(t, "1")}
	origins := map[string]bool{}
	verify := func(s *stack) string {
		t.Helper()
		s.env["XDG_STATE_HOME"] = home
		out, code := s.run("sigil", "audit", "verify", "--auditor", s.auditor(t), "--wait", "10s")
		if code != 0 || !strings.Contains(out, "log verified: OK") {
			t.Fatalf("audit verify of %s: exit %d\n%s", s.dir, code, out)
		}
		return out
	}
	for _, s := range stacks {
		out := verify(s)
		origin := strings.TrimSuffix(strings.Fields(out[strings.Index(out, "audit log "):])[2], ":")
		origins[origin] = true
	}
	if len(origins) != 2 {
		t.Fatalf("two dev stacks, origins %v: want two", origins)
	}
	if out := verify(stacks[0]); !strings.Contains(out, "(incremental: from") {
		t.Fatalf("auditing the first stack again is not incremental:\n%s", out)
	}
	states, _ := filepath.Glob(filepath.Join(home, "sigil", "audit", "*", "*.state"))
	if len(states) != 2 {
		t.Fatalf("state files %v, want one per log", states)
	}
}
