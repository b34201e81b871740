package store_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/audit"
	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/internal/store/backend"
)

func openStore(tb testing.TB) store.Store {
	tb.Helper()
	st, err := backend.Open(context.Background(), "sqlite:"+filepath.Join(tb.TempDir(), "sigil.db"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	return st
}

// NewAuditEntry encodes the canonical entry, its leaf hash and its keys.
func TestNewAuditEntry(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 6e6, time.FixedZone("CET", 3600))
	p := audit.Key{Label: "sigil-token.v2", KID: "k2", Alg: "ES256", Purpose: "token"}
	e, err := store.NewAuditEntry(audit.KeyRotated, at, p, "kid:k2")
	if err != nil {
		t.Fatal(err)
	}
	got, err := audit.Decode(e.Data)
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	var payload audit.Key
	if err := json.Unmarshal(got.Data, &payload); err != nil || payload != p {
		t.Errorf("payload = %+v, %v; want %+v", payload, err, p)
	}
	switch {
	case got.Kind != audit.KeyRotated || !got.Time.Equal(at) || got.Time.Location() != time.UTC:
		t.Errorf("entry = %s at %v, want %s at %v in UTC", got.Kind, got.Time, audit.KeyRotated, at)
	case !bytes.Equal(e.LeafHash, audit.LeafHash(e.Data)):
		t.Error("leaf hash is not the entry's")
	case !reflect.DeepEqual(e.Keys, []string{"kid:k2"}) || !e.CreatedAt.Equal(at):
		t.Errorf("keys %v, created %v", e.Keys, e.CreatedAt)
	}
	if _, err := store.NewAuditEntry(audit.KeyRotated, at, make(chan int)); err == nil || !strings.Contains(err.Error(), "key.rotated") {
		t.Errorf("unencodable payload: %v, want an error naming the kind", err)
	}
}

// An operation whose audit entry cannot be committed does not take effect:
// the entry is appended in the operation's transaction.
func TestAppendAuditEntriesInOperation(t *testing.T) {
	ctx := t.Context()
	st := openStore(t)
	if err := store.RecordAudit(ctx, st, audit.PolicyLoaded, audit.Policy{Version: "v1"}, "policy:v1"); err != nil {
		t.Fatalf("RecordAudit: %v", err)
	}
	ev := store.Evidence{Digest: fmt.Sprintf("%064x", 1), EKHash: "ek", Kind: "test", Bundle: []byte(`{}`), CreatedAt: time.Now()}
	err := st.Tx(ctx, func(tx store.Tx) error {
		if err := tx.PutEvidence(ctx, ev); err != nil {
			return err
		}
		dup, err := store.NewAuditEntry(audit.PolicyLoaded, time.Now(), audit.Policy{Version: "v1"}, "policy:v1")
		if err != nil {
			return err
		}
		return store.AppendAuditEntries(ctx, tx, dup)
	})
	if err == nil || !strings.Contains(err.Error(), "append audit entry") {
		t.Fatalf("Tx with a duplicate audit key = %v, want the append to fail", err)
	}
	if _, err := st.Evidence(ctx, ev.Digest); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("evidence of the failed operation: %v, want ErrNotFound", err)
	}
	if n, err := st.AuditSize(ctx); err != nil || n != 1 {
		t.Errorf("AuditSize = %d, %v; want 1", n, err)
	}
	if idx, err := store.AuditStorage(st).Find(ctx, "policy:v1"); err != nil || idx != 0 {
		t.Errorf("Find(policy:v1) = %d, %v; want 0", idx, err)
	}
}

// BenchmarkAppend measures what the audit entry adds to an operation: the
// same store write (an evidence record) with and without its audit entry in
// the transaction, at 1 and 32 concurrent callers, in the same run.
func BenchmarkAppend(b *testing.B) {
	for _, callers := range []int{1, 32} {
		for _, withAudit := range []bool{false, true} {
			name := fmt.Sprintf("callers=%d/audit=%v", callers, withAudit)
			b.Run(name, func(b *testing.B) { benchAppend(b, callers, withAudit) })
		}
	}
}

func benchAppend(b *testing.B, callers int, withAudit bool) {
	ctx := context.Background()
	st := openStore(b)
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for range callers {
		wg.Go(func() {
			for i := next.Add(1); i <= int64(b.N); i = next.Add(1) {
				if err := st.Tx(ctx, func(tx store.Tx) error { return benchOp(ctx, tx, i, withAudit) }); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "ops/s")
}

func benchOp(ctx context.Context, tx store.Tx, i int64, withAudit bool) error {
	digest := fmt.Sprintf("%064x", i)
	if err := tx.PutEvidence(ctx, store.Evidence{Digest: digest, EKHash: "ek", Kind: "bench", Bundle: []byte(`{"bench":true}`), CreatedAt: time.Now()}); err != nil {
		return err
	}
	if !withAudit {
		return nil
	}
	e, err := store.NewAuditEntry(audit.PolicyLoaded, time.Now(), audit.Policy{Version: digest}, "bench:"+digest)
	if err != nil {
		return err
	}
	return store.AppendAuditEntries(ctx, tx, e)
}
