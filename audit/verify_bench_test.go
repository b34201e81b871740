package audit_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/audit"
)

// memLog is an in-memory Source of encoded entries whose latest
// checkpoint covers the first size of them.
type memLog struct {
	entries [][]byte
	note    []byte
}

func (m *memLog) Checkpoint(context.Context) ([]byte, error) { return m.note, nil }

func (m *memLog) Entries(_ context.Context, start, end uint64) ([][]byte, error) {
	return m.entries[start:min(end, uint64(len(m.entries)))], nil
}

func (m *memLog) LeafHashes(_ context.Context, start, end uint64) ([][]byte, error) {
	out := make([][]byte, 0, end-start)
	for _, e := range m.entries[start:end] {
		out = append(out, audit.LeafHash(e))
	}
	return out, nil
}

// at returns the log's first size entries under a signed checkpoint.
func (m *memLog) at(b *testing.B, s *audit.Signer, size uint64) *memLog {
	root, err := audit.RootHash(b.Context(), m, size)
	if err != nil {
		b.Fatal(err)
	}
	note, err := s.Sign(audit.Checkpoint{Origin: s.Name(), Size: size, Hash: root})
	if err != nil {
		b.Fatal(err)
	}
	return &memLog{entries: m.entries[:size], note: note}
}

// BenchmarkVerifyMillion is an auditor keeping up with a log of 1,000,000
// entries (token.exchanged, about 250 bytes each) that then grows by
// 10,000: a full run reads, hashes and decodes all 1,000,000 (the
// baseline: what every run cost before the state file held the tree's
// right edge) and saves its state; an incremental one, from that state,
// reads only the 10,000 new ones. ns/op is the two runs; full-s and
// incremental-ms each, and speedup their ratio.
func BenchmarkVerifyMillion(b *testing.B) {
	const size, added = 1_000_000, 10_000
	s := newSigner(b, origin, newKey(b))
	all := &memLog{entries: make([][]byte, size+added)}
	at := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	for i := range all.entries {
		all.entries[i] = encode(b, audit.TokenExchanged, at.Add(time.Duration(i)*time.Millisecond), audit.Token{
			JTI: fmt.Sprintf("jti-%08d", i), Sub: "spiffe://sigil.test/workload/orders", Aud: []string{"https://api.sigil.test"},
			Scope: "orders:read", Exp: at.Add(time.Hour), CNF: "0123456789abcdef0123456789abcdef01234567890"})
	}
	before, after := all.at(b, s, size), all.at(b, s, size+added)
	state := filepath.Join(b.TempDir(), "state")
	var full, incremental time.Duration
	for b.Loop() {
		if err := os.Remove(state); err != nil && !os.IsNotExist(err) {
			b.Fatal(err)
		}
		runtime.GC() // each run as in a fresh auditor process, not paying for the other's garbage
		began := time.Now()
		if rep, err := audit.Verify(b.Context(), before, s.Verifier(), audit.VerifyOptions{StatePath: state}); err != nil || rep.Entries != size {
			b.Fatalf("full: %v\n%s", err, rep)
		}
		full += time.Since(began)
		runtime.GC()
		began = time.Now()
		if rep, err := audit.Verify(b.Context(), after, s.Verifier(), audit.VerifyOptions{StatePath: state}); err != nil || rep.Entries != added || !rep.Incremental {
			b.Fatalf("incremental: %v\n%s", err, rep)
		}
		incremental += time.Since(began)
	}
	n := float64(b.N)
	b.ReportMetric(full.Seconds()/n, "full-s")
	b.ReportMetric(float64(incremental.Milliseconds())/n, "incremental-ms")
	b.ReportMetric(float64(full)/float64(incremental), "speedup")
}
