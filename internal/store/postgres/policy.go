package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/sigil-dev/sigil/internal/store"
)

// AppliedPolicy reads the one applied_policy row.
func (r reader) AppliedPolicy(ctx context.Context) (store.AppliedPolicy, error) {
	var p store.AppliedPolicy
	var seq, at int64
	err := r.q.QueryRow(ctx, `SELECT seq, version, applied_at FROM applied_policy WHERE id = 1`).Scan(&seq, &p.Version, &at)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.AppliedPolicy{}, fmt.Errorf("store: applied policy: %w", store.ErrNotFound)
	}
	if err != nil {
		return store.AppliedPolicy{}, fmt.Errorf("store: applied policy: %w", err)
	}
	p.Seq, p.AppliedAt = uint64(seq), fromMicros(at)
	return p, nil
}

// PutAppliedPolicy replaces the applied_policy row if p's seq is larger:
// the upsert's WHERE is re-checked on the row as a concurrent writer left
// it.
func (w writer) PutAppliedPolicy(ctx context.Context, p store.AppliedPolicy) error {
	if p.Version == "" {
		return errors.New("store: put applied policy: empty version")
	}
	tag, err := w.q.Exec(ctx, `INSERT INTO applied_policy (id, seq, version, applied_at) VALUES (1, $1, $2, $3)
		ON CONFLICT (id) DO UPDATE SET seq = EXCLUDED.seq, version = EXCLUDED.version, applied_at = EXCLUDED.applied_at
		WHERE applied_policy.seq < EXCLUDED.seq`, int64(p.Seq), p.Version, micros(p.AppliedAt))
	if err != nil {
		return fmt.Errorf("store: put applied policy %d: %w", p.Seq, classify(err))
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("store: put applied policy %d: %w: an application of this seq or a larger one is stored", p.Seq, store.ErrConflict)
	}
	return nil
}
