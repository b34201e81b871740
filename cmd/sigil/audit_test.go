package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/api"
	"github.com/sigil-dev/sigil/audit"
	"github.com/sigil-dev/sigil/client"
	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/internal/store/backend"
	"github.com/sigil-dev/sigil/testenv"
)

// Each way of tampering with a real sigild's exported log is caught by
// `sigil audit verify`, which names what is wrong and exits 1.
func TestAuditVerifyDetectsTampering(t *testing.T) {
	s := startStack(t, "1")
	state := filepath.Join(s.dir, "orders")
	if out, code := s.enroll(0, "spiffe://sigil.test/workload/orders", state); code != 0 {
		t.Fatalf("enroll: %s", out)
	}
	old := exportLog(t, s) // a checkpoint the auditor sees first
	if out, code := s.run("sigil", "renew", "--state", state); code != 0 {
		t.Fatalf("renew: %s", out)
	}
	testenv.WaitFor(t, 10*time.Second, "a larger checkpoint", func() bool { return checkpointSize(t, exportLog(t, s)) > checkpointSize(t, old) })
	good := exportLog(t, s)
	seen := filepath.Join(t.TempDir(), "seen.checkpoint")
	if out, code := verifyDir(s, good, seen); code != 0 {
		t.Fatalf("the genuine export does not verify: %s", out)
	}

	t.Run("served-proofs", func(t *testing.T) { servedProofs(t, s, old, good, state) })
	t.Run("evidence-for-tpm2-tools", func(t *testing.T) { evidenceForTools(t, s, good) })
	// An incremental run over the renewal checks it against the device's
	// enrollment, which only the earlier run read: the state carries it.
	t.Run("incremental-renewal", func(t *testing.T) {
		st := filepath.Join(t.TempDir(), "state")
		if out, code := verifyDir(s, old, st); code != 0 {
			t.Fatalf("before the renewal: %s", out)
		}
		out, code := verifyDir(s, good, st)
		if code != 0 || !strings.Contains(out, "(incremental: from") || !strings.Contains(out, "0 enrollments, 1 renewals") {
			t.Fatalf("exit %d, want the renewal re-verified incrementally:\n%s", code, out)
		}
	})

	tests := []struct {
		name   string
		tamper func(t *testing.T, dir string)
		want   string
	}{
		{"edit-one-byte", func(t *testing.T, dir string) {
			editEntries(t, dir, func(lines []string) []string {
				lines[len(lines)-1] = strings.Replace(lines[len(lines)-1], "sigil.test", "sigil.tesT", 1)
				return lines
			})
		}, "do not hash to"},
		{"delete-entry", func(t *testing.T, dir string) {
			editEntries(t, dir, func(lines []string) []string { return append(lines[:2], lines[3:]...) })
		}, ""},
		{"swap-entries", func(t *testing.T, dir string) {
			editEntries(t, dir, func(lines []string) []string {
				lines[1], lines[2] = lines[2], lines[1]
				return lines
			})
		}, "do not hash to"},
		{"checkpoint-by-another-key", func(t *testing.T, dir string) {
			note := readFileT(t, filepath.Join(dir, "checkpoint"))
			cp, err := audit.PeekCheckpoint(note)
			if err != nil {
				t.Fatal(err)
			}
			other, _ := softSigner(t, cp.Origin)
			forged, err := other.Sign(cp)
			if err != nil {
				t.Fatal(err)
			}
			writeFile(t, filepath.Join(dir, "checkpoint"), string(forged))
		}, "signature"},
		// Entries beyond the checkpoint, well-formed copies of logged ones:
		// nothing signed covers them, and the auditor must see them.
		{"entries-beyond-the-checkpoint", func(t *testing.T, dir string) {
			editEntries(t, dir, func(lines []string) []string { return append(lines, lines[len(lines)-2:]...) })
		}, "2 entries from index"},
		{"old-checkpoint-replayed", func(t *testing.T, dir string) {
			os.RemoveAll(dir)
			copyDir(t, old, dir)
		}, "rollback"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "export")
			copyDir(t, good, dir)
			tt.tamper(t, dir)
			st := filepath.Join(t.TempDir(), "state")
			copyFile(t, seen, st)
			// --full: some tamperings change only entries the state's
			// checkpoint covers, which an incremental run does not read.
			out, code := s.run("sigil", "audit", "verify", "--dir", dir, "--state", st, "--full")
			if code != 1 || !strings.Contains(out, "FAILED") || !strings.Contains(out, tt.want) {
				t.Fatalf("exit %d, want 1 with FAILED and %q:\n%s", code, tt.want, out)
			}
			if !bytes.Equal(readFileT(t, st), readFileT(t, seen)) {
				t.Error("a failed verification moved the auditor's state")
			}
		})
	}
}

// A log that forks — truncated and re-grown with other entries under the
// same key — and a log that records an enrollment whose quote does not
// verify are both refused, though every signature on them is good.
func TestAuditVerifyDetectsLyingServer(t *testing.T) {
	bin := buildCLI(t)
	dir := t.TempDir()
	signer, pub := softSigner(t, "")
	keyPEM := filepath.Join(dir, "audit-key.pem")
	writePublicKey(t, keyPEM, pub)
	ekRoots, _ := filepath.Abs("../../attest/testdata/ek-ca.pem")
	verify := func(export, state string) (string, int) {
		return runBin(t, bin, "audit", "verify", "--dir", export, "--key", keyPEM, "--ek-roots", ekRoots, "--state", state)
	}

	t.Run("fork", func(t *testing.T) {
		state := filepath.Join(t.TempDir(), "state")
		a := buildLog(t, signer, policyEntries("sha256:aa", "sha256:bb", "sha256:cc"))
		if out, code := verify(a, state); code != 0 {
			t.Fatalf("first log: %s", out)
		}
		b := buildLog(t, signer, policyEntries("sha256:aa", "sha256:XX", "sha256:cc", "sha256:dd"))
		out, code := verify(b, state)
		if code != 1 || !strings.Contains(out, "fork") {
			t.Fatalf("exit %d, want a fork report:\n%s", code, out)
		}
	})
	t.Run("enrollment-with-a-bad-quote", func(t *testing.T) {
		ev := readFileT(t, "../../attest/testdata/evidence-wrong-nonce.json")
		out, code := verify(buildLog(t, signer, enrollmentEntries(t, ev)), filepath.Join(t.TempDir(), "state"))
		if code != 1 || !strings.Contains(out, "first bad entry: 0") || !strings.Contains(out, "evidence does not verify") {
			t.Fatalf("exit %d, want entry 0 refused for its evidence:\n%s", code, out)
		}
	})
	t.Run("genuine-enrollment", func(t *testing.T) {
		ev := readFileT(t, "../../attest/testdata/evidence-genuine.json")
		if out, code := verify(buildLog(t, signer, enrollmentEntries(t, ev)), filepath.Join(t.TempDir(), "state")); code != 0 {
			t.Fatalf("exit %d:\n%s", code, out)
		}
	})
}

// buildLog writes entries into a fresh store, signs a checkpoint over them
// with signer and exports the log.
func buildLog(t *testing.T, signer *audit.Signer, entries []store.AuditEntry) string {
	t.Helper()
	ctx := context.Background()
	st, err := backend.Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), "log.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Tx(ctx, func(tx store.Tx) error { return store.AppendAuditEntries(ctx, tx, entries...) }); err != nil {
		t.Fatal(err)
	}
	l, err := audit.New(store.AuditStorage(st), signer, signer.Name())
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Integrate(ctx); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "export")
	if err := audit.WriteExport(ctx, store.AuditStorage(st), dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

func policyEntries(versions ...string) []store.AuditEntry {
	var out []store.AuditEntry
	for i, v := range versions {
		e, err := store.NewAuditEntry(audit.PolicyLoaded, time.Unix(int64(i), 0), audit.Policy{Version: v})
		if err != nil {
			panic(err)
		}
		out = append(out, e)
	}
	return out
}

// enrollmentEntries logs the recorded evidence as an enrollment, the way a
// server that skipped verification would.
func enrollmentEntries(t *testing.T, evidence []byte) []store.AuditEntry {
	t.Helper()
	var ev struct {
		Identity string `json:"identity"`
		AK       struct {
			Public []byte `json:"public"`
		} `json:"ak"`
		EKPublic []byte `json:"ek_public"`
	}
	if err := json.Unmarshal(evidence, &ev); err != nil {
		t.Fatal(err)
	}
	compact := new(bytes.Buffer)
	if err := json.Compact(compact, evidence); err != nil {
		t.Fatal(err)
	}
	e, err := store.NewAuditEntry(audit.DeviceEnrolled, time.Unix(0, 0), audit.Enrollment{
		SPIFFEID: ev.Identity, Serial: "01", EKHash: hexSum(ev.EKPublic), AKHash: hexSum(ev.AK.Public),
		EvidenceDigest: hexSum(compact.Bytes()), PolicyVersion: "sha256:00", Evidence: compact.Bytes(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return []store.AuditEntry{e}
}

// servedProofs checks sigild's proof endpoints against the signed
// checkpoints: the inclusion proof of the renewed certificate, found by its
// serial, and the consistency proof between the old and new checkpoints.
func servedProofs(t *testing.T, s *stack, old, cur, state string) {
	pub, err := audit.ParsePublicKeyPEM(readFileT(t, s.env["SIGIL_AUDIT_KEY"]))
	if err != nil {
		t.Fatal(err)
	}
	origin, err := audit.Origin("sigil.test", pub)
	if err != nil {
		t.Fatal(err)
	}
	key, err := audit.NewVerifier(origin, pub)
	if err != nil {
		t.Fatal(err)
	}
	open := func(dir string) audit.Checkpoint {
		cp, err := audit.OpenCheckpoint(readFileT(t, filepath.Join(dir, "checkpoint")), key)
		if err != nil {
			t.Fatal(err)
		}
		return cp
	}
	a, b := open(old), open(cur)
	serial := readPEM(t, filepath.Join(state, "cert.pem"))[0].SerialNumber.Text(16)
	var inc api.AuditProof
	getJSON(t, s, fmt.Sprintf("%s?serial=%s&size=%d", api.PathAuditInclusion, serial, b.Size), &inc)
	entries, err := audit.DirSource(cur).Entries(t.Context(), inc.Index, inc.Index+1)
	if err != nil {
		t.Fatal(err)
	}
	if err := audit.VerifyInclusion(audit.LeafHash(entries[0]), inc.Index, b.Size, inc.Hashes, b.Hash); err != nil {
		t.Errorf("inclusion proof of serial %s: %v", serial, err)
	}
	var cons api.AuditProof
	getJSON(t, s, fmt.Sprintf("%s?from=%d&to=%d", api.PathAuditConsistency, a.Size, b.Size), &cons)
	if err := audit.VerifyConsistency(a.Size, b.Size, cons.Hashes, a.Hash, b.Hash); err != nil {
		t.Errorf("consistency proof %d→%d: %v", a.Size, b.Size, err)
	}
}

// getJSON reads path from sigild as the stack's auditor.
func getJSON(t *testing.T, s *stack, path string, v any) {
	t.Helper()
	w, err := client.Open(t.Context(), s.auditor(t))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	resp, err := w.HTTPClient().Get(s.env["SIGIL_SERVER"] + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %d %s", path, resp.StatusCode, body)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}
