package main_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sigil-dev/sigil/audit"
	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/internal/store/backend"
	"github.com/sigil-dev/sigil/internal/witness"
	"github.com/sigil-dev/sigil/testenv"
)

// TestAuditVerifyRequiresWitnesses: `sigil audit verify --witness KEY`
// accepts a log whose checkpoint a real witness cosigned, and refuses one
// with fewer cosignatures than --min-witnesses (all the keys by default)
// or with a forged one. A fork shown to an auditor with no state of its
// own (so no fork check of its own) is refused because the witness, which
// saw the other tree, refuses to cosign it.
func TestAuditVerifyRequiresWitnesses(t *testing.T) {
	t.Parallel()
	bin := buildCLI(t)
	dir := t.TempDir()
	signer, pub := softSigner(t, "") // the origin sigil audit verify derives from --key
	keyPEM := filepath.Join(dir, "audit-key.pem")
	writePublicKey(t, keyPEM, pub)
	ekRoots, _ := filepath.Abs("../../attest/testdata/ek-ca.pem")
	wl := testenv.WitnessLog{Origin: signer.Name(), PublicKey: signer.Verifier().WitnessKey()}
	w1 := testenv.StartWitness(t, "witness-one.test", wl)
	w2 := testenv.StartWitness(t, "witness-two.test", wl)
	verify := func(export string, args ...string) (string, int) {
		args = append([]string{"audit", "verify", "--dir", export, "--key", keyPEM, "--ek-roots", ekRoots,
			"--state", filepath.Join(t.TempDir(), "state")}, args...)
		return runBin(t, bin, args...)
	}
	honest, errs := witnessedLog(t, signer, policyEntries("sha256:aa", "sha256:bb", "sha256:cc"), w1)
	if errs[0] != nil {
		t.Fatalf("the witness refused the honest log: %v", errs[0])
	}
	fork, errs := witnessedLog(t, signer, policyEntries("sha256:aa", "sha256:XX", "sha256:cc", "sha256:dd"), w1)
	if !errors.Is(errs[0], witness.ErrInconsistent) {
		t.Fatalf("the witness on the fork: %v, want ErrInconsistent", errs[0])
	}
	forged := filepath.Join(t.TempDir(), "forged")
	copyDir(t, honest, forged)
	cp := readFileT(t, filepath.Join(forged, "checkpoint"))
	lines, err := audit.SignatureLines(cp)
	if err != nil || len(lines) != 2 {
		t.Fatalf("the honest checkpoint's signature lines: %q, %v", lines, err)
	}
	tampered := lines[1][:len(lines[1])-6] + "AAAA=\n"
	writeFile(t, filepath.Join(forged, "checkpoint"), strings.Replace(string(cp), lines[1], tampered, 1))

	for _, tc := range []struct {
		name   string
		export string
		args   []string
		code   int
		want   string
	}{
		{"cosigned", honest, []string{"--witness", w1.Key}, 0, "witnessed:    by 1 (witness-one.test), 1 required"},
		{"no witness asked", honest, nil, 0, "log verified: OK"},
		{"both required, one cosigned", honest, []string{"--witness", w1.Key, "--witness", w2.Key}, 1, "too few witness cosignatures"},
		{"one of two required", honest, []string{"--witness", w1.Key, "--witness", w2.Key, "--min-witnesses", "1"}, 0, "witnessed:    by 1 (witness-one.test), 1 required"},
		{"fork, not cosigned", fork, []string{"--witness", w1.Key}, 1, "cosigned by 0 of the 1 witnesses required (missing: witness-one.test)"},
		{"fork, witnesses not required", fork, nil, 0, "log verified: OK"},
		{"forged cosignature", forged, []string{"--witness", w1.Key}, 1, "does not verify"},
		{"more required than given", honest, []string{"--witness", w1.Key, "--min-witnesses", "2"}, 1, "--min-witnesses 2"},
		{"not a witness key", honest, []string{"--witness", "witness+zz"}, 1, "--witness"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, code := verify(tc.export, tc.args...)
			if code != tc.code || !strings.Contains(out, tc.want) {
				t.Fatalf("exit %d, want %d with %q:\n%s", code, tc.code, tc.want, out)
			}
		})
	}
}

// witnessedLog is buildLog with the checkpoint submitted to the witnesses
// ws before the export: from size 0, or from the size a witness says it
// has seen, with a consistency proof of this log. It returns the export
// and each witness's refusal (nil where it cosigned).
func witnessedLog(t *testing.T, signer *audit.Signer, entries []store.AuditEntry, ws ...*testenv.Witness) (string, []error) {
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
	signed, err := l.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	size := uint64(len(entries))
	errs := make([]error, len(ws))
	for i, w := range ws {
		c, err := witness.NewClient(w.URL, w.Key, nil)
		if err != nil {
			t.Fatal(err)
		}
		errs[i] = submit(ctx, l, signer.Verifier(), c, signed, size, func(line []byte) error {
			return st.AddCosignature(ctx, size, c.ID(), line)
		})
	}
	dir := filepath.Join(t.TempDir(), "export")
	if err := audit.WriteExport(ctx, store.AuditStorage(st), dir); err != nil {
		t.Fatal(err)
	}
	return dir, errs
}

// submit posts the checkpoint signed (of size) to c, once more from the
// size c names if it has seen another, and keeps the cosignature.
func submit(ctx context.Context, l *audit.Log, v *audit.Verifier, c *witness.Client, signed []byte, size uint64, keep func([]byte) error) error {
	forWitness, err := audit.WitnessNote(signed, v)
	if err != nil {
		return err
	}
	line, err := c.AddCheckpoint(ctx, 0, nil, forWitness, signed)
	var seen *witness.SizeError
	if errors.As(err, &seen) && seen.Size <= size {
		proof, perr := l.ConsistencyProof(ctx, seen.Size, size)
		if perr != nil {
			return perr
		}
		line, err = c.AddCheckpoint(ctx, seen.Size, proof, forWitness, signed)
	}
	if err != nil {
		return err
	}
	return keep(line)
}
