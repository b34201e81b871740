package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/sigil-dev/sigil/internal/store"
)

// AppliedPolicy reads the one applied_policy row.
func (r reader) AppliedPolicy(ctx context.Context) (store.AppliedPolicy, error) {
	var p store.AppliedPolicy
	var seq, at int64
	err := r.q.QueryRowContext(ctx, `SELECT seq, version, applied_at FROM applied_policy WHERE id = 1`).Scan(&seq, &p.Version, &at)
	if errors.Is(err, sql.ErrNoRows) {
		return store.AppliedPolicy{}, fmt.Errorf("store: applied policy: %w", store.ErrNotFound)
	}
	if err != nil {
		return store.AppliedPolicy{}, fmt.Errorf("store: applied policy: %w", err)
	}
	p.Seq, p.AppliedAt = uint64(seq), fromMicros(at)
	return p, nil
}

// PutAppliedPolicy replaces the applied_policy row if p's seq is larger.
func (w writer) PutAppliedPolicy(ctx context.Context, p store.AppliedPolicy) error {
	if p.Version == "" {
		return errors.New("store: put applied policy: empty version")
	}
	res, err := w.q.ExecContext(ctx, `INSERT INTO applied_policy (id, seq, version, applied_at) VALUES (1, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, version = excluded.version, applied_at = excluded.applied_at
		WHERE applied_policy.seq < excluded.seq`, int64(p.Seq), p.Version, micros(p.AppliedAt))
	if err != nil {
		return fmt.Errorf("store: put applied policy %d: %w", p.Seq, classify(err))
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("store: put applied policy %d: %w", p.Seq, err)
	}
	if n == 0 {
		return fmt.Errorf("store: put applied policy %d: %w: an application of this seq or a larger one is stored", p.Seq, store.ErrConflict)
	}
	return nil
}
