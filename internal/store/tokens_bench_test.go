package store

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkTokenTx measures what a token exchange writes: one Tx that
// inserts the token record (exchanged from a stored subject token) and
// appends its audit entry, with the default synchronous=FULL and group
// commit, from 1 and from 64 goroutines.
func BenchmarkTokenTx(b *testing.B) {
	for _, goroutines := range []int{1, 64} {
		b.Run(fmt.Sprintf("goroutines=%d", goroutines), func(b *testing.B) {
			benchTokenTx(b, goroutines)
		})
	}
}

func benchTokenTx(b *testing.B, goroutines int) {
	ctx := context.Background()
	st := openPath(b, filepath.Join(b.TempDir(), "sigil.db"))
	insertTokens(b, st, testToken("subject", ""))
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	began := time.Now()
	for range goroutines {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < int64(b.N); i = next.Add(1) - 1 {
				tok := testToken(fmt.Sprintf("bench-%d", i), "subject")
				if err := insertAudited(ctx, st, tok); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(began).Seconds(), "tx/s")
}
