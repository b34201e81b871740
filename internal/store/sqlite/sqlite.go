package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"runtime"
	"strings"

	"github.com/sigil-dev/sigil/internal/store"
)

// SQLite settings. The store keeps two pools on one file:
//
//   - one writer connection, which the group committer (groupcommit.go)
//     alone uses. Writers queue for it in Tx, for as long as their ctx
//     allows, rather than in SQLite's busy handler, which polls with
//     sleeps and fails with SQLITE_BUSY once busy_timeout has passed:
//     with an unbounded pool, 64 goroutines writing got tens of
//     SQLITE_BUSY errors per 3200 transactions. Transactions BEGIN
//     IMMEDIATE (_txlock=immediate) and so take the write lock up front; a
//     deferred transaction that reads and then writes fails with
//     SQLITE_BUSY at once, without waiting, when another connection wrote
//     meanwhile (hundreds of errors in the same run).
//   - max(4, GOMAXPROCS) read-only (query_only) connections. In WAL mode
//     readers see the last commit and neither block the writer nor wait
//     for it.
//
// busy_timeout covers what is left: another process (sigild init, the
// CLI) writing the same file, and WAL checkpoints.
const (
	sqliteBusyTimeoutMS = 5000
	sqliteSynchronous   = "FULL" // fsync every commit: a consumed challenge or a revocation survives power loss
)

// sqliteManaged are the DSN parameters and pragmas the store sets itself.
var sqliteManaged = []string{"_txlock", "_journal_mode", "_journal", "_foreign_keys", "_fk",
	"_query_only", "journal_mode", "foreign_keys", "query_only", "locking_mode", "wal_autocheckpoint"}

type sqliteStore struct {
	reader           // on the read pool, through rq
	store.Autocommit // through Tx
	w                *sql.DB
	r                *sql.DB
	rq               *stmtQuerier
	gc               *committer        // on w
	notes            *notifier         // kicked by gc
	ck               *checkpointer     // kicked by gc
	known            store.KnownTokens // see RecordToken
}

var (
	_ store.Store        = (*sqliteStore)(nil)
	_ store.FeedNotifier = (*sqliteStore)(nil)
)

// Open opens the SQLite database a DSN names, creating and migrating the
// schema as needed:
//
//	sqlite:/var/lib/sigil/sigil.db   SQLite file
//	file:/var/lib/sigil/sigil.db     SQLite URI
//	/var/lib/sigil/sigil.db          SQLite file
//
// The DSN may carry driver query parameters (for example
// "?_pragma=synchronous(NORMAL)"); the store manages journal_mode,
// foreign_keys, query_only, wal_autocheckpoint (checkpoint.go) and _txlock
// itself. An in-memory database is
// refused: the store's connections would each see a different one.
func Open(ctx context.Context, dsn string, opts ...Option) (store.Store, error) {
	o := options{maxBatch: defaultMaxBatch, checkpoints: defaultCheckpoints}
	for _, opt := range opts {
		opt(&o)
	}
	if o.maxBatch < 1 {
		return nil, fmt.Errorf("store: WithMaxBatch(%d): want at least 1", o.maxBatch)
	}
	if rest, ok := strings.CutPrefix(dsn, "sqlite:"); ok {
		dsn = strings.TrimPrefix(rest, "//")
	}
	base, err := sqliteDSN(dsn)
	if err != nil {
		return nil, err
	}
	if err := createPrivate(base); err != nil {
		return nil, err
	}
	w, err := openSQLitePool(ctx, base+"&_txlock=immediate&_pragma=journal_mode(WAL)&_pragma=wal_autocheckpoint(0)", 1)
	if err != nil {
		return nil, err
	}
	ms, err := store.LoadMigrations(sqliteMigrations, "migrations")
	if err != nil {
		err = fmt.Errorf("store: %w", err)
	} else {
		err = migrate(ctx, w, ms)
	}
	if err != nil {
		w.Close()
		return nil, err
	}
	r, err := openSQLitePool(ctx, base+"&_pragma=query_only(1)", max(4, runtime.GOMAXPROCS(0)))
	if err != nil {
		w.Close()
		return nil, err
	}
	ckDB, err := openSQLitePool(ctx, base, 1)
	if err != nil {
		r.Close()
		w.Close()
		return nil, err
	}
	rq := newStmtQuerier(r)
	s := &sqliteStore{reader: reader{rq}, w: w, r: r, rq: rq}
	s.gc = newCommitter(w, o.maxBatch)
	if s.ck, err = newCheckpointer(ctx, o.checkpoints, ckDB, s.Tx); err != nil {
		ckDB.Close()
		r.Close()
		w.Close()
		return nil, err
	}
	s.notes = newNotifier(acquireHub(base), s.reader.LatestRevocationSeq)
	s.gc.revoked, s.gc.committed = s.notes.revoked, s.ck.committed
	s.Autocommit = store.Autocommit{Run: s.Tx}
	return s, nil
}

// An Option changes how Open sets the store up.
type Option func(*options)

type options struct {
	maxBatch    int
	checkpoints checkpointConfig
}

const defaultMaxBatch = 64

// WithMaxBatch sets how many waiting Store.Tx calls at most share one
// database transaction and its commit; the default is 64. 1 turns group
// commit off: each Tx commits on its own.
func WithMaxBatch(n int) Option {
	return func(o *options) { o.maxBatch = n }
}

// sqliteDSN validates dsn and returns it with the store's pragmas and a
// query string to which more parameters can be appended with "&".
func sqliteDSN(dsn string) (string, error) {
	name, query, _ := strings.Cut(dsn, "?")
	if name == "" || name == "file:" {
		return "", errors.New("store: sqlite DSN names no file")
	}
	q, err := url.ParseQuery(query)
	if err != nil {
		return "", fmt.Errorf("store: sqlite DSN query: %w", err)
	}
	if strings.Contains(name, ":memory:") || q.Get("mode") == "memory" {
		return "", errors.New("store: in-memory sqlite is not supported: the store's connections would each see a different database")
	}
	pragmas := map[string]bool{}
	for _, p := range q["_pragma"] {
		pragmas[pragmaName(p)] = true
	}
	for _, k := range sqliteManaged {
		if q.Has(k) || pragmas[k] {
			return "", fmt.Errorf("store: sqlite DSN sets %s, which the store manages", k)
		}
	}
	if !q.Has("_busy_timeout") && !q.Has("_timeout") && !pragmas["busy_timeout"] {
		q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", sqliteBusyTimeoutMS))
	}
	if !q.Has("_synchronous") && !q.Has("_sync") && !pragmas["synchronous"] {
		q.Add("_pragma", "synchronous("+sqliteSynchronous+")")
	}
	q.Add("_pragma", "foreign_keys(1)")
	return name + "?" + q.Encode(), nil
}

// createPrivate creates the database file of dsn readable by its owner
// only, unless it exists. SQLite gives the -wal and -shm files the mode of
// the database file.
func createPrivate(dsn string) error {
	name, _, _ := strings.Cut(dsn, "?")
	name = strings.TrimPrefix(name, "file:")
	if strings.HasPrefix(name, "//") {
		return nil // a URI with an authority: SQLite's business
	}
	f, err := os.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("store: create database: %w", err)
	}
	return f.Close()
}

// pragmaName returns the lower-case name of a pragma such as "Synchronous(1)".
func pragmaName(p string) string {
	name, _, _ := strings.Cut(p, "(")
	name, _, _ = strings.Cut(name, "=")
	return strings.ToLower(strings.TrimSpace(name))
}

func openSQLitePool(ctx context.Context, dsn string, conns int) (*sql.DB, error) {
	db, err := openDB(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("store: open sqlite: %w", err)
	}
	db.SetMaxOpenConns(conns)
	db.SetMaxIdleConns(conns)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
	if err := checkSQLite(ctx, db); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// checkSQLite makes sure the connection came up in WAL mode with foreign
// keys on: journal_mode=WAL silently stays off on file systems without
// shared memory.
func checkSQLite(ctx context.Context, db *sql.DB) error {
	var mode string
	var fk int
	if err := db.QueryRowContext(ctx, `PRAGMA journal_mode`).Scan(&mode); err != nil {
		return fmt.Errorf("store: open sqlite: %w", err)
	}
	if err := db.QueryRowContext(ctx, `PRAGMA foreign_keys`).Scan(&fk); err != nil {
		return fmt.Errorf("store: open sqlite: %w", err)
	}
	if !strings.EqualFold(mode, "wal") || fk != 1 {
		return fmt.Errorf("store: open sqlite: journal_mode=%s foreign_keys=%d, want wal and 1", mode, fk)
	}
	return nil
}

// Tx runs fn alone or queues it for a batch; see groupcommit.go.
func (s *sqliteStore) Tx(ctx context.Context, fn func(store.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c := s.gc.enter(ctx)
	if c == nil {
		defer s.gc.leave()
		// Let goroutines already runnable reach Tx before this one
		// commits: they queue and share the next batch's COMMIT. On one
		// CPU, without it, a commit's CPU-bound work never overlaps
		// another request's, nothing queues and every exchange pays its
		// own COMMIT (BenchmarkExchange/sqlite: about 10 % less sigild
		// CPU per exchange and 20 % more exchanges/s with it).
		runtime.Gosched()
		return s.gc.alone(ctx, fn)
	}
	tx, err := c.await()
	if err != nil {
		return err
	}
	c.run(tx, s.gc.stmts, fn)
	return <-c.done
}

// Ping reads the database file through the read pool; it does not queue
// behind writes.
func (s *sqliteStore) Ping(ctx context.Context) error {
	var v int
	err := s.r.QueryRowContext(ctx, `SELECT max(version) FROM schema_migrations`).Scan(&v)
	if err != nil {
		return fmt.Errorf("store: ping: %w", err)
	}
	return nil
}

func (s *sqliteStore) Close() error {
	// The checkpointer first (it may be running a Tx), then the readers,
	// so that the writer, the last connection, checkpoints the WAL into
	// the database file.
	ckErr := s.ck.close()
	s.notes.close()
	s.rq.close()
	s.gc.stmts.close()
	return errors.Join(ckErr, s.r.Close(), s.w.Close())
}

// constraintKind is which kind of constraint a statement broke.
type constraintKind int

const (
	notConstraint constraintKind = iota
	uniqueConstraint
	foreignKeyConstraint
)

// classify wraps constraint failures in the package's sentinels.
func classify(err error) error {
	switch constraint(err) {
	case uniqueConstraint:
		return fmt.Errorf("%w: %w", store.ErrConflict, err)
	case foreignKeyConstraint:
		return fmt.Errorf("%w: %w", store.ErrNotFound, err)
	}
	return err
}

// withCheckpoints sets when the checkpointer checkpoints (tests).
func withCheckpoints(cfg checkpointConfig) Option {
	return func(o *options) { o.checkpoints = cfg }
}
