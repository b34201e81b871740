package store

import (
	"context"
	"database/sql"
	"time"
)

// The package's SQL is written to run on PostgreSQL too: standard SQL plus
// ON CONFLICT and RETURNING, which SQLite (3.35+) and PostgreSQL both have.
// The exceptions: placeholders are "?" where PostgreSQL wants "$1" (rewrite
// them), and the locking noted at BindDevice, InsertCertificate,
// InsertToken and RevokeToken.

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
	_ Reader = reader{}
	_ Writer = writer{}
	_ Tx     = txn{}

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

// Writes through the Store run in a transaction of their own.

func (s *sqliteStore) CreateChallenge(ctx context.Context, c Challenge) error {
	return s.Tx(ctx, func(tx Tx) error { return tx.CreateChallenge(ctx, c) })
}

func (s *sqliteStore) ConsumeChallenge(ctx context.Context, id string, now time.Time) (c Challenge, err error) {
	err = s.Tx(ctx, func(tx Tx) error { c, err = tx.ConsumeChallenge(ctx, id, now); return err })
	return c, err
}

func (s *sqliteStore) PurgeExpiredChallenges(ctx context.Context, before time.Time) (n int64, err error) {
	err = s.Tx(ctx, func(tx Tx) error { n, err = tx.PurgeExpiredChallenges(ctx, before); return err })
	return n, err
}

func (s *sqliteStore) BindDevice(ctx context.Context, d Device, now time.Time) (prev string, err error) {
	err = s.Tx(ctx, func(tx Tx) error { prev, err = tx.BindDevice(ctx, d, now); return err })
	return prev, err
}

func (s *sqliteStore) SetDeviceStatus(ctx context.Context, ekHash string, st DeviceStatus, now time.Time) (revoked []string, err error) {
	err = s.Tx(ctx, func(tx Tx) error { revoked, err = tx.SetDeviceStatus(ctx, ekHash, st, now); return err })
	return revoked, err
}

func (s *sqliteStore) InsertCertificate(ctx context.Context, c Certificate) error {
	return s.Tx(ctx, func(tx Tx) error { return tx.InsertCertificate(ctx, c) })
}

func (s *sqliteStore) RevokeCertificate(ctx context.Context, serial, reason string, at time.Time) error {
	return s.Tx(ctx, func(tx Tx) error { return tx.RevokeCertificate(ctx, serial, reason, at) })
}

func (s *sqliteStore) PutEvidence(ctx context.Context, e Evidence) error {
	return s.Tx(ctx, func(tx Tx) error { return tx.PutEvidence(ctx, e) })
}
