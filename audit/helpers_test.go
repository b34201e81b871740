package audit_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/sigil-dev/sigil/audit"
)

const origin = "sigil.test/sigil-audit"

// memStorage is an in-memory audit.Storage, also usable as an audit.Source.
type memStorage struct {
	mu          sync.Mutex
	entries     [][]byte
	hashes      [][]byte
	checkpoints map[uint64][]byte
	putErr      error // PutCheckpoint fails with it when set
}

var (
	_ audit.Storage          = (*memStorage)(nil)
	_ audit.CheckpointLister = (*memStorage)(nil)
)

func newMemStorage() *memStorage { return &memStorage{checkpoints: map[uint64][]byte{}} }

// append stores encoded entries with their leaf hashes.
func (s *memStorage) append(data ...[]byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range data {
		s.entries = append(s.entries, d)
		s.hashes = append(s.hashes, audit.LeafHash(d))
	}
}

func (s *memStorage) Size(context.Context) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return uint64(len(s.entries)), nil
}

func (s *memStorage) LeafHashes(_ context.Context, start, end uint64) ([][]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if start > end || end > uint64(len(s.hashes)) {
		return nil, fmt.Errorf("leaf hashes [%d, %d) out of range", start, end)
	}
	return slices.Clone(s.hashes[start:end]), nil
}

// Entries returns what it has, like an audit.Source.
func (s *memStorage) Entries(_ context.Context, start, end uint64) ([][]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	end = min(end, uint64(len(s.entries)))
	if start > end {
		return nil, nil
	}
	return slices.Clone(s.entries[start:end]), nil
}

func (s *memStorage) LatestCheckpoint(context.Context) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.checkpoints) == 0 {
		return nil, nil
	}
	return s.checkpoints[slices.Max(slices.Collect(maps.Keys(s.checkpoints)))], nil
}

func (s *memStorage) PutCheckpoint(_ context.Context, size uint64, note []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.putErr != nil {
		return s.putErr
	}
	if old, ok := s.checkpoints[size]; ok && !bytes.Equal(old, note) {
		return errors.New("conflict: another note for this size")
	}
	s.checkpoints[size] = note
	return nil
}

func (s *memStorage) Checkpoints(context.Context) ([][]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out [][]byte
	for _, n := range s.checkpoints {
		out = append(out, n)
	}
	return out, nil
}

// Checkpoint makes memStorage an audit.Source.
func (s *memStorage) Checkpoint(ctx context.Context) ([]byte, error) {
	note, err := s.LatestCheckpoint(ctx)
	if note == nil && err == nil {
		err = audit.ErrNoCheckpoint
	}
	return note, err
}

// edit applies f to the stored entries and recomputes the leaf hashes, as
// an attacker with write access to the database would.
func (s *memStorage) edit(f func(entries [][]byte) [][]byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.entries = f(slices.Clone(s.entries))
	s.hashes = nil
	for _, e := range s.entries {
		s.hashes = append(s.hashes, audit.LeafHash(e))
	}
}

// newKey returns a software P-256 key.
func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newSigner(t testing.TB, name string, k crypto.Signer) *audit.Signer {
	t.Helper()
	s, err := audit.NewSigner(name, k)
	if err != nil {
		t.Fatalf("NewSigner: %v", err)
	}
	return s
}

// flakySigner fails while down is set, as an HSM that went away.
type flakySigner struct {
	crypto.Signer
	down atomic.Bool
}

var errHSMDown = errors.New("hsm: token unavailable")

func (f *flakySigner) Sign(r io.Reader, d []byte, o crypto.SignerOpts) ([]byte, error) {
	if f.down.Load() {
		return nil, errHSMDown
	}
	return f.Signer.Sign(r, d, o)
}

// testLogger sends logs to the test output.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// clock is a settable clock for checkpoint times.
type clock struct{ t atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.t.Store(time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC).UnixNano())
	return c
}

func (c *clock) now() time.Time { return time.Unix(0, c.t.Add(int64(time.Second))).UTC() }

// sampleEntry returns the encoding of the i-th entry of a plausible log.
func sampleEntry(t testing.TB, i int) []byte {
	t.Helper()
	at := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Millisecond)
	var kind audit.Kind
	var p any
	switch i % 4 {
	case 0:
		kind, p = audit.DeviceEnrolled, audit.Enrollment{
			SPIFFEID: fmt.Sprintf("spiffe://sigil.test/workload/w%d", i), Serial: fmt.Sprintf("%x", 1000+i),
			EKHash: fmt.Sprintf("ek%d", i), AKHash: fmt.Sprintf("ak%d", i), EvidenceDigest: "d1",
			PolicyVersion: "v1", PolicyIDs: []string{"enroll"}, Evidence: []byte(`{"version":1}`),
		}
	case 1:
		kind, p = audit.CertificateIssued, audit.Certificate{Serial: fmt.Sprintf("%x", 1000+i), SPIFFEID: "spiffe://sigil.test/workload/w", NotAfter: at.Add(time.Hour)}
	case 2:
		kind, p = audit.TokenExchanged, audit.Token{JTI: fmt.Sprintf("jti-%d", i), ParentJTI: "jti-0", Sub: "spiffe://sigil.test/workload/a",
			Act: []string{"spiffe://sigil.test/workload/b"}, Aud: []string{"api"}, Scope: "read", Exp: at.Add(5 * time.Minute), CNF: "thumb"}
	default:
		kind, p = audit.KeyRotated, audit.Key{Label: "jwt.v2", KID: "kid", Alg: "ES256", Purpose: "jwt"}
	}
	return encode(t, kind, at, p)
}

func encode(t testing.TB, kind audit.Kind, at time.Time, p any) []byte {
	t.Helper()
	e, err := audit.NewEntry(kind, at, p)
	if err != nil {
		t.Fatalf("NewEntry: %v", err)
	}
	data, err := audit.Encode(e)
	if err != nil {
		t.Fatalf("Encode: %v", err)
	}
	return data
}

// counterValue reads a metric from reg; labels must match exactly.
func metricValue(t testing.TB, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if labelsMatch(m.GetLabel(), labels) {
				if c := m.GetCounter(); c != nil {
					return c.GetValue()
				}
				return m.GetGauge().GetValue()
			}
		}
	}
	t.Fatalf("metric %s%v not found", name, labels)
	return 0
}

func labelsMatch(got []*dto.LabelPair, want map[string]string) bool {
	if len(got) != len(want) {
		return false
	}
	for _, l := range got {
		if want[l.GetName()] != l.GetValue() {
			return false
		}
	}
	return true
}

func statePath(t testing.TB) string { return filepath.Join(t.TempDir(), "state", "checkpoint") }
