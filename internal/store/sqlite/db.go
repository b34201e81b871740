package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/sigil-dev/sigil/internal/store"
)

// The package's SQL is written to run on PostgreSQL too: standard SQL plus
// ON CONFLICT and RETURNING, which SQLite (3.35+) and PostgreSQL both have;
// placeholders are "?" where PostgreSQL wants "$1". Every promise the store
// contract makes under concurrency is kept with SQL that keeps it with
// several writers at READ COMMITTED (a conditional UPDATE and its row
// count, a unique constraint, a coordinator row updated in the
// transaction), not by SQLite running one writer at a time: see
// BindDevice, InsertCertificate, RevokeCertificate, InsertToken,
// RevokeToken and AppendAudit.

// querier runs the package's statements: *sql.DB and *sql.Tx through
// sqlQuerier, or a Tx's batchQuerier.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) scanner
}

// stdQuerier is what *sql.DB and *sql.Tx have in common.
type stdQuerier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// sqlQuerier adapts a stdQuerier to querier.
type sqlQuerier struct{ stdQuerier }

func (q sqlQuerier) QueryRowContext(ctx context.Context, query string, args ...any) scanner {
	return q.stdQuerier.QueryRowContext(ctx, query, args...)
}

// reader implements Reader with q.
type reader struct{ q querier }

// writer implements Writer with q, which must be a write transaction.
type writer struct{ q querier }

// txn is a Tx.
type txn struct {
	reader
	writer
}

var (
	_ store.Reader = reader{}
	_ store.Writer = writer{}
	_ store.Tx     = txn{}

	_ querier = sqlQuerier{}
)

// scanner is what *sql.Row and *sql.Rows have in common.
type scanner interface{ Scan(dest ...any) error }

// micros is how times are stored.
func micros(t time.Time) int64 { return t.UnixMicro() }

func fromMicros(us int64) time.Time { return time.UnixMicro(us).UTC() }

func nullMicros(t *time.Time) sql.NullInt64 {
	if t == nil {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: micros(*t), Valid: true}
}

func fromNullMicros(n sql.NullInt64) *time.Time {
	if !n.Valid {
		return nil
	}
	t := fromMicros(n.Int64)
	return &t
}

// scanAll collects the rows scan reads.
func scanAll[T any](rows *sql.Rows, scan func(scanner) (T, error)) ([]T, error) {
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

// savepoint runs fn in a savepoint named name, and rolls back to it if fn
// fails.
func (w writer) savepoint(ctx context.Context, name string, fn func() error) error {
	if _, err := w.q.ExecContext(ctx, `SAVEPOINT `+name); err != nil {
		return fmt.Errorf("store: %s: savepoint: %w", name, err)
	}
	err := fn()
	ctx = context.WithoutCancel(ctx) // close the savepoint whatever ctx does
	if err != nil {
		if _, rbErr := w.q.ExecContext(ctx, `ROLLBACK TO `+name); rbErr != nil {
			err = errors.Join(err, fmt.Errorf("store: %s: rollback: %w", name, rbErr))
		}
	}
	if _, relErr := w.q.ExecContext(ctx, `RELEASE `+name); relErr != nil && err == nil {
		err = fmt.Errorf("store: %s: release savepoint: %w", name, relErr)
	}
	return err
}
