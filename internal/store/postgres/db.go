package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/sigil-dev/sigil/internal/store"
)

// querier runs the package's statements: the pool, or a transaction.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// reader implements Reader with q.
type reader struct{ q querier }

// writer implements Writer in the transaction q; it notifies revocations
// on channel.
type writer struct {
	q       querier
	channel string
}

// txn is a Tx.
type txn struct {
	reader
	writer
}

var (
	_ store.Reader = reader{}
	_ store.Writer = writer{}
	_ store.Tx     = txn{}
)

// scanAll collects the rows scan reads; an empty slice, not nil, for none.
func scanAll[T any](rows pgx.Rows, scan func(pgx.Row) (T, error)) ([]T, error) {
	defer rows.Close()
	out := []T{}
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// scanString reads one text column.
func scanString(r pgx.Row) (v string, err error) { return v, r.Scan(&v) }

// reader reads in w's transaction, seeing its writes.
func (w writer) reader() reader { return reader{w.q} }
