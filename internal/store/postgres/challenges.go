package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/sigil-dev/sigil/internal/store"
)

const challengeColumns = `id, ek_hash, ak_hash, nonce, secret_hash, spiffe_id, kind, pending,
	created_at, expires_at, consumed_at`

func scanChallenge(s pgx.Row) (store.Challenge, error) {
	var c store.Challenge
	var created, expires int64
	var consumed *int64
	err := s.Scan(&c.ID, &c.EKHash, &c.AKHash, &c.Nonce, &c.SecretHash, &c.SPIFFEID, &c.Kind,
		&c.Pending, &created, &expires, &consumed)
	c.CreatedAt, c.ExpiresAt, c.ConsumedAt = fromMicros(created), fromMicros(expires), fromNullMicros(consumed)
	return c, err
}

func (r reader) Challenge(ctx context.Context, id string) (store.Challenge, error) {
	c, err := scanChallenge(r.q.QueryRow(ctx, `SELECT `+challengeColumns+` FROM challenges WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Challenge{}, fmt.Errorf("store: challenge %q: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.Challenge{}, fmt.Errorf("store: challenge %q: %w", id, err)
	}
	return c, nil
}

// CreateChallenge ignores c.ConsumedAt: a new challenge is unused. A stored
// id inserts nothing (ON CONFLICT DO NOTHING), so the transaction goes on.
func (w writer) CreateChallenge(ctx context.Context, c store.Challenge) error {
	tag, err := w.q.Exec(ctx, `INSERT INTO challenges (`+challengeColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL) ON CONFLICT (id) DO NOTHING`,
		c.ID, c.EKHash, c.AKHash, c.Nonce, c.SecretHash, c.SPIFFEID, string(c.Kind), c.Pending,
		micros(c.CreatedAt), micros(c.ExpiresAt))
	if err != nil {
		return fmt.Errorf("store: create challenge %q: %w", c.ID, classify(err))
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("store: create challenge %q: id taken: %w", c.ID, store.ErrConflict)
	}
	return nil
}

// ConsumeChallenge is one conditional UPDATE: of concurrent calls, the
// first to update the row wins; the others, re-reading it once it
// commits, match nothing.
func (w writer) ConsumeChallenge(ctx context.Context, id string, now time.Time) (store.Challenge, error) {
	row := w.q.QueryRow(ctx, `UPDATE challenges SET consumed_at = $1
		WHERE id = $2 AND consumed_at IS NULL AND expires_at > $1
		RETURNING `+challengeColumns, micros(now), id)
	c, err := scanChallenge(row)
	if err == nil {
		return c, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return store.Challenge{}, fmt.Errorf("store: consume challenge %q: %w", id, err)
	}
	c, err = w.reader().Challenge(ctx, id)
	switch {
	case err != nil:
		return store.Challenge{}, err
	case c.ConsumedAt != nil:
		return store.Challenge{}, fmt.Errorf("store: consume challenge %q: %w", id, store.ErrChallengeUsed)
	default:
		return store.Challenge{}, fmt.Errorf("store: consume challenge %q: %w", id, store.ErrChallengeExpired)
	}
}

func (w writer) PurgeExpiredChallenges(ctx context.Context, before time.Time) (int64, error) {
	tag, err := w.q.Exec(ctx, `DELETE FROM challenges WHERE expires_at < $1`, micros(before))
	if err != nil {
		return 0, fmt.Errorf("store: purge challenges: %w", err)
	}
	return tag.RowsAffected(), nil
}
