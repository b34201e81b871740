package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/sigil-dev/sigil/internal/store"
)

// pgStore is a Store on two connection pools to one database: w for
// transactions, r for the Store's reads, so that reads never wait for a
// connection that transactions hold (a read through the Store inside a
// Tx's fn must not block), and a burst of reads never starves writers.
// Each pool has pool_max_conns connections at most (default: 4 or the
// number of CPUs, whichever is more).
type pgStore struct {
	reader           // on r
	store.Autocommit // through Tx
	w, r             *pgxpool.Pool
	channel          string // see revocationChannel
	rec              recorder
	known            store.KnownTokens // see RecordToken
}

var (
	_ store.Store         = (*pgStore)(nil)
	_ store.FeedNotifier  = (*pgStore)(nil)
	_ store.TokenRecorder = (*pgStore)(nil)
)

// Open connects to the database a postgres:// URL names and migrates its
// schema as needed. Errors never repeat the URL: it may hold a password.
func Open(ctx context.Context, dsn string) (store.Store, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, errors.New("store: postgres DSN: cannot parse it (not repeated here: it may hold a password)")
	}
	w, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("store: open postgres: %w", err)
	}
	s, err := open(ctx, w)
	if err != nil {
		w.Close()
		return nil, err
	}
	return s, nil
}

// open migrates the database of w and returns a store with a read pool
// of its own.
func open(ctx context.Context, w *pgxpool.Pool) (*pgStore, error) {
	if err := migrate(ctx, w); err != nil {
		return nil, fmt.Errorf("store: open postgres: %w", err)
	}
	channel, err := revocationChannel(ctx, w)
	if err != nil {
		return nil, err
	}
	r, err := pgxpool.NewWithConfig(ctx, w.Config())
	if err != nil {
		return nil, fmt.Errorf("store: open postgres: read pool: %w", err)
	}
	s := &pgStore{reader: reader{r}, w: w, r: r, channel: channel}
	s.Autocommit = store.Autocommit{Run: s.Tx}
	return s, nil
}

// Tx runs fn in one READ COMMITTED transaction on a connection of the
// pool.
func (s *pgStore) Tx(ctx context.Context, fn func(store.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	tx, err := s.begin(ctx)
	if err != nil {
		return fmt.Errorf("store: begin: %w", ctxErr(ctx, err))
	}
	done := false
	defer func() {
		if !done {
			// Also on a panic, which goes on up: the connection goes back
			// to the pool clean.
			_ = tx.Rollback(context.WithoutCancel(ctx))
		}
	}()
	if err := fn(txn{reader{tx}, writer{tx, s.channel}}); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	done = true
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("store: commit: %w", ctxErr(ctx, classify(err)))
	}
	return nil
}

// begin begins a transaction on a connection of the write pool. A pooled
// connection the server ended (it restarted, or was restarted within the
// second in which the pool trusts a connection without a ping) fails the
// BEGIN and is dropped: begin takes another, up to one more than the pool
// holds, so that the first writes after a database restart do not fail.
// Nothing of fn has run then, so this is no retry of fn.
func (s *pgStore) begin(ctx context.Context) (pgx.Tx, error) {
	for range s.w.Config().MaxConns {
		tx, err := s.w.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted})
		if err == nil || ctx.Err() != nil || !connectionEnded(err) {
			return tx, err
		}
	}
	return s.w.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted})
}

// connectionEnded reports whether err is the server ending the connection
// (SQLSTATE class 57P: operator intervention, such as a shutdown).
func connectionEnded(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && strings.HasPrefix(pe.Code, "57P")
}

// ctxErr returns ctx.Err() if ctx has ended, for err caused by it, else
// err.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
		return fmt.Errorf("%w: %w", ctx.Err(), err)
	}
	return err
}

// Ping runs a query on the read pool: it does not queue behind
// transactions.
func (s *pgStore) Ping(ctx context.Context) error {
	var v int
	if err := s.r.QueryRow(ctx, `SELECT 1`).Scan(&v); err != nil {
		return fmt.Errorf("store: ping: %w", err)
	}
	return nil
}

// Close closes the pools, waiting for connections in use to come back.
// Subscriptions (NotifyRevocations) end with their ctx, not here.
func (s *pgStore) Close() error {
	s.r.Close()
	s.w.Close()
	return nil
}

// PostgreSQL error codes the store classifies.
const (
	codeUniqueViolation     = "23505"
	codeForeignKeyViolation = "23503"
)

// classify wraps constraint failures in the package's sentinels.
func classify(err error) error {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return err
	}
	switch pe.Code {
	case codeUniqueViolation:
		return fmt.Errorf("%w: %w", store.ErrConflict, err)
	case codeForeignKeyViolation:
		return fmt.Errorf("%w: %w", store.ErrNotFound, err)
	}
	return err
}

// micros is how times are stored: microseconds since the Unix epoch.
func micros(t time.Time) int64 { return t.UnixMicro() }

func fromMicros(us int64) time.Time { return time.UnixMicro(us).UTC() }

func nullMicros(t *time.Time) *int64 {
	if t == nil {
		return nil
	}
	us := micros(*t)
	return &us
}

func fromNullMicros(us *int64) *time.Time {
	if us == nil {
		return nil
	}
	t := fromMicros(*us)
	return &t
}
