package sqlite

import (
	"context"
	"database/sql"
	"sync"
)

// maxCachedStatements bounds the read pool's statement cache; the package
// has a few dozen distinct queries.
const maxCachedStatements = 256

// stmtQuerier runs reads on db through prepared statements, prepared once
// per query and connection (database/sql re-prepares a Stmt on each pool
// connection as it needs): SQLite spends more time compiling a
// statement than running a point lookup. Only the read pool uses it: the
// writer's single connection is held by the transaction that would prepare
// (see txStmts).
type stmtQuerier struct {
	db *sql.DB
	mu sync.Mutex
	m  map[string]*sql.Stmt
}

var _ querier = (*stmtQuerier)(nil)

func newStmtQuerier(db *sql.DB) *stmtQuerier {
	return &stmtQuerier{db: db, m: map[string]*sql.Stmt{}}
}

// stmt returns the prepared statement for query, preparing it if needed;
// a full cache answers nil, and the caller runs the query unprepared.
func (q *stmtQuerier) stmt(ctx context.Context, query string) (*sql.Stmt, error) {
	q.mu.Lock()
	s, ok := q.m[query]
	full := len(q.m) >= maxCachedStatements
	q.mu.Unlock()
	if ok || full {
		return s, nil
	}
	s, err := q.db.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if prev, ok := q.m[query]; ok {
		s.Close()
		return prev, nil
	}
	q.m[query] = s
	return s, nil
}

func (q *stmtQuerier) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	s, err := q.stmt(ctx, query)
	if err != nil || s == nil {
		return q.db.ExecContext(ctx, query, args...)
	}
	return s.ExecContext(ctx, args...)
}

func (q *stmtQuerier) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	s, err := q.stmt(ctx, query)
	if err != nil || s == nil {
		return q.db.QueryContext(ctx, query, args...)
	}
	return s.QueryContext(ctx, args...)
}

func (q *stmtQuerier) QueryRowContext(ctx context.Context, query string, args ...any) scanner {
	s, err := q.stmt(ctx, query)
	if err != nil || s == nil {
		return q.db.QueryRowContext(ctx, query, args...)
	}
	return s.QueryRowContext(ctx, args...)
}

// close releases the prepared statements.
func (q *stmtQuerier) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, s := range q.m {
		s.Close()
	}
	clear(q.m)
}

// txStmts holds the statements prepared on the writer connection, for the
// transactions that run there. A transaction cannot prepare one for those
// after it: the connection is held by the transaction, and a statement
// prepared through it closes with it. So a query met for the first time
// runs unprepared and is queued, and the committer prepares the queue
// before its next transaction, while the connection is free.
type txStmts struct {
	db *sql.DB
	mu sync.Mutex
	m  map[string]*sql.Stmt // nil while queued
	// queued are the queries to prepare before the next transaction.
	queued []string
}

func newTxStmts(db *sql.DB) *txStmts {
	return &txStmts{db: db, m: map[string]*sql.Stmt{}}
}

// stmt returns query's prepared statement for use in tx, or nil, and then
// the caller runs the query unprepared.
func (s *txStmts) stmt(ctx context.Context, tx *txLocal, query string) *sql.Stmt {
	if st := tx.get(query); st != nil {
		return st
	}
	s.mu.Lock()
	st, ok := s.m[query]
	if !ok && len(s.m) < maxCachedStatements {
		s.m[query] = nil // until prepared; queued once
		s.queued = append(s.queued, query)
	}
	s.mu.Unlock()
	if st == nil {
		return nil
	}
	return tx.put(query, tx.tx.StmtContext(ctx, st))
}

// txLocal is one transaction with its handles of txStmts' statements
// (sql.Tx.StmtContext, which allocates and registers a new one on every
// call), kept for the transaction's fns: a batch's fns run the same
// statements. They close with the transaction.
type txLocal struct {
	tx *sql.Tx
	mu sync.Mutex
	m  map[string]*sql.Stmt
}

func newTxLocal(tx *sql.Tx) *txLocal { return &txLocal{tx: tx} }

func (l *txLocal) get(query string) *sql.Stmt {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.m[query]
}

func (l *txLocal) put(query string, st *sql.Stmt) *sql.Stmt {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.m == nil {
		l.m = map[string]*sql.Stmt{}
	}
	l.m[query] = st
	return st
}

// prepare prepares the queued queries. Call it only while no transaction
// holds the writer connection, which it would wait for.
func (s *txStmts) prepare(ctx context.Context) {
	s.mu.Lock()
	queued := s.queued
	s.queued = nil
	s.mu.Unlock()
	for _, q := range queued {
		st, err := s.db.PrepareContext(ctx, q)
		s.mu.Lock()
		if err != nil {
			delete(s.m, q) // runs unprepared, and is queued again
		} else {
			s.m[q] = st
		}
		s.mu.Unlock()
	}
}

// close releases the prepared statements.
func (s *txStmts) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, st := range s.m {
		if st != nil {
			st.Close()
		}
	}
	clear(s.m)
}
