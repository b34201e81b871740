package postgres

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/internal/store/sqlite"
	"github.com/sigil-dev/sigil/internal/store/storetest"
	"github.com/sigil-dev/sigil/testenv"
)

// BenchmarkTokenTx measures what a token exchange writes, the token
// record (exchanged from a stored subject token) and its audit entry, as
// the token service writes them (store.RecordToken: on PostgreSQL one
// round trip, group-committed; on SQLite one Tx, group-committed), on
// PostgreSQL (a private cluster on loopback, fsync on) and on SQLite (a
// file, synchronous=FULL) in the same run, from 1 and from 16 goroutines:
// pg-tx/s, sqlite-tx/s and their ratio pg/sqlite. Every record on
// PostgreSQL takes the audit log's head row, so appends are serialised by
// the database across replicas, as they must be for one gap-free log.
func BenchmarkTokenTx(b *testing.B) {
	pg := testenv.StartPostgres(b)
	for _, goroutines := range []int{1, 16} {
		b.Run(fmt.Sprintf("goroutines=%d", goroutines), func(b *testing.B) {
			pgStore := openBench(b, func(ctx context.Context) (store.Store, error) { return Open(ctx, pg.NewDatabase(b)) })
			lite := openBench(b, func(ctx context.Context) (store.Store, error) {
				return sqlite.Open(ctx, filepath.Join(b.TempDir(), "sigil.db"))
			})
			b.ResetTimer()
			pgRate := tokenTxRate(b, pgStore, goroutines)
			liteRate := tokenTxRate(b, lite, goroutines)
			b.ReportMetric(pgRate, "pg-tx/s")
			b.ReportMetric(liteRate, "sqlite-tx/s")
			b.ReportMetric(pgRate/liteRate, "pg/sqlite")
		})
	}
}

// openBench opens a store for b with a stored subject token.
func openBench(b *testing.B, openFn func(context.Context) (store.Store, error)) store.Store {
	st, err := openFn(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	storetest.InsertTokens(b, st, storetest.Token("subject", ""))
	return st
}

// tokenTxRate runs b.N token transactions on st from goroutines and
// returns how many it ran per second.
func tokenTxRate(b *testing.B, st store.Store, goroutines int) float64 {
	ctx := context.Background()
	var next atomic.Int64
	var wg sync.WaitGroup
	began := time.Now()
	for range goroutines {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < int64(b.N); i = next.Add(1) - 1 {
				if err := storetest.InsertAudited(ctx, st, storetest.Token(fmt.Sprintf("bench-%d", i), "subject")); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	return float64(b.N) / time.Since(began).Seconds()
}
