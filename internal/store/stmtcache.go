package store

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
// connection as it needs): modernc SQLite spends more time compiling a
// statement than running a point lookup. Only the read pool uses it: the
// writer's single connection is held by the transaction that would prepare.
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
