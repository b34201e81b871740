package tokens_test

import (
	"context"
	"database/sql"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/internal/tokens"
	"github.com/sigil-dev/sigil/internal/tokens/tokenstest"
	"github.com/sigil-dev/sigil/testenv"
)

// BenchmarkExchangeGrowth measures what one token exchange (b exchanging
// a's token for c, through the service) adds to the store and to the audit
// log, on each backend:
//
//	store-B/exchange         live bytes the database grows by (SQLite: pages
//	                         in use after a WAL checkpoint; PostgreSQL: the
//	                         schema's tables, indexes and TOAST)
//	pruned-store-B/exchange  the same once every token record is purged
//	                         (tokens.retention): what stays is the log
//	log-B/exchange           what the log itself holds per exchange: the
//	                         encoded entries, their leaf hashes and the
//	                         stored subtree hashes (what an export or the
//	                         tiles carry)
//	store/log                store-B/exchange as a ratio of log-B/exchange,
//	                         both measured in this run
//
// Run it with a fixed count for stable figures (page granularity):
// go test -run '^$' -bench ExchangeGrowth -benchtime 20000x ./internal/tokens
func BenchmarkExchangeGrowth(b *testing.B) {
	b.Run("backend=sqlite", func(b *testing.B) {
		e := tokenstest.New(b, quiet)
		benchGrowth(b, e, func(ctx context.Context) int64 { return sqliteLiveBytes(b, e.DBPath) })
	})
	b.Run("backend=postgres", func(b *testing.B) {
		dsn := testenv.PostgresDB(b)
		e := tokenstest.NewOn(b, dsn, quiet)
		benchGrowth(b, e, func(ctx context.Context) int64 { return postgresBytes(b, dsn) })
	})
}

// quiet drops the service's per-request logs, which would dominate.
func quiet(c *tokens.Config) { c.Log = slog.New(slog.DiscardHandler) }

func benchGrowth(b *testing.B, e *tokenstest.Env, size func(context.Context) int64) {
	ctx := context.Background()
	a, bw, c := e.Workload(b, "a"), e.Workload(b, "b"), e.Workload(b, "c")
	subject := mustToken(b, e.Service, a, cc(bw.ID, "scope", "read write"))
	before, entries := size(ctx), auditSize(b, e.Store)
	n := 0
	for b.Loop() {
		if _, err := e.Service.Token(ctx, bw.Cert, exchange(subject.AccessToken, c.ID, "scope", "read")); err != nil {
			b.Fatal(err)
		}
		n++
	}
	b.StopTimer()
	grown := size(ctx) - before
	logBytes := logBytes(b, e.Store, entries)
	if _, err := e.Store.PurgeExpiredTokens(ctx, time.Now().Add(24*time.Hour)); err != nil {
		b.Fatal(err)
	}
	pruned := size(ctx) - before
	b.ReportMetric(float64(grown)/float64(n), "store-B/exchange")
	b.ReportMetric(float64(pruned)/float64(n), "pruned-store-B/exchange")
	b.ReportMetric(float64(logBytes)/float64(n), "log-B/exchange")
	b.ReportMetric(float64(grown)/float64(logBytes), "store/log")
}

func auditSize(b *testing.B, st store.Store) uint64 {
	n, err := st.AuditSize(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	return n
}

// logBytes is what the log holds of the entries from index from on: each
// encoded entry, its 32-byte leaf hash, and the 32-byte subtree hashes
// stored as they complete.
func logBytes(b *testing.B, st store.Store, from uint64) int64 {
	ctx := context.Background()
	to := auditSize(b, st)
	var total int64
	for start := from; start < to; start += store.MaxAuditRange {
		es, err := st.AuditEntries(ctx, start, min(start+store.MaxAuditRange, to))
		if err != nil {
			b.Fatal(err)
		}
		for _, e := range es {
			total += int64(len(e)) + 32
		}
	}
	for size := from + 1; size <= to; size++ {
		total += 32 * int64(len(store.CompletedAuditNodes(size)))
	}
	return total
}

// sqliteLiveBytes is the bytes of the SQLite database's pages in use (as
// a new connection sees it, WAL included), free pages left out.
func sqliteLiveBytes(b *testing.B, path string) int64 {
	db, err := sql.Open("sqlite", path)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	var pages, free, pageSize int64
	for q, v := range map[string]*int64{"PRAGMA page_count": &pages, "PRAGMA freelist_count": &free, "PRAGMA page_size": &pageSize} {
		if err := db.QueryRow(q).Scan(v); err != nil {
			b.Fatal(err)
		}
	}
	return (pages - free) * pageSize
}

// postgresBytes is the size of the tables of the DSN's schema (its
// search_path), with their indexes and TOAST.
func postgresBytes(b *testing.B, dsn string) int64 {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int64
	err = conn.QueryRow(ctx, `SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint
		FROM pg_class c JOIN pg_namespace ns ON ns.oid = c.relnamespace
		WHERE ns.nspname = current_schema() AND c.relkind = 'r'`).Scan(&n)
	if err != nil && !strings.Contains(err.Error(), "no rows") {
		b.Fatal(err)
	}
	return n
}
