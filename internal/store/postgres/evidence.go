package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/sigil-dev/sigil/internal/store"
)

func (r reader) Evidence(ctx context.Context, digest string) (store.Evidence, error) {
	var e store.Evidence
	var created int64
	err := r.q.QueryRow(ctx, `SELECT digest, ek_hash, kind, bundle, created_at FROM evidence
		WHERE digest = $1`, digest).Scan(&e.Digest, &e.EKHash, &e.Kind, &e.Bundle, &created)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Evidence{}, fmt.Errorf("store: evidence %s: %w", digest, store.ErrNotFound)
	}
	if err != nil {
		return store.Evidence{}, fmt.Errorf("store: evidence %s: %w", digest, err)
	}
	e.CreatedAt = fromMicros(created)
	return e, nil
}

// PutEvidence inserts unless the digest is stored (a concurrent insert of
// it is waited for), then compares with what is stored.
func (w writer) PutEvidence(ctx context.Context, e store.Evidence) error {
	tag, err := w.q.Exec(ctx, `INSERT INTO evidence (digest, ek_hash, kind, bundle, created_at)
		VALUES ($1, $2, $3, $4, $5) ON CONFLICT (digest) DO NOTHING`,
		e.Digest, e.EKHash, e.Kind, e.Bundle, micros(e.CreatedAt))
	if err != nil {
		return fmt.Errorf("store: put evidence %s: %w", e.Digest, classify(err))
	}
	if tag.RowsAffected() == 1 {
		return nil
	}
	old, err := w.reader().Evidence(ctx, e.Digest)
	if err != nil {
		return err
	}
	if old.EKHash != e.EKHash || old.Kind != e.Kind || !bytes.Equal(old.Bundle, e.Bundle) {
		return fmt.Errorf("store: put evidence %s: differs from the stored record: %w", e.Digest, store.ErrConflict)
	}
	return nil
}
