package auditlog_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/audit"
	"github.com/sigil-dev/sigil/internal/auditlog"
	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/internal/store/backend"
)

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
	st, err := backend.Open(ctx, "sqlite:"+filepath.Join(b.TempDir(), "sigil.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for range callers {
		wg.Go(func() {
			for i := next.Add(1); i <= int64(b.N); i = next.Add(1) {
				if err := st.Tx(ctx, func(tx store.Tx) error { return op(ctx, tx, i, withAudit) }); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "ops/s")
}

func op(ctx context.Context, tx store.Tx, i int64, withAudit bool) error {
	digest := fmt.Sprintf("%064x", i)
	if err := tx.PutEvidence(ctx, store.Evidence{Digest: digest, EKHash: "ek", Kind: "bench", Bundle: []byte(`{"bench":true}`), CreatedAt: time.Now()}); err != nil {
		return err
	}
	if !withAudit {
		return nil
	}
	e, err := auditlog.Entry(audit.PolicyLoaded, time.Now(), audit.Policy{Version: digest}, "bench:"+digest)
	if err != nil {
		return err
	}
	return auditlog.Append(ctx, tx, e)
}
