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
	var n int64
	for _, q := range []string{`DELETE FROM challenges WHERE expires_at < $1`, `DELETE FROM used_challenges WHERE expires_at < $1`} {
		tag, err := w.q.Exec(ctx, q, micros(before))
		if err != nil {
			return 0, fmt.Errorf("store: purge challenges: %w", err)
		}
		n += tag.RowsAffected()
	}
	return n, nil
}

func (r reader) ChallengeUsed(ctx context.Context, id string) (bool, error) {
	var one int
	err := r.q.QueryRow(ctx, `SELECT 1 FROM used_challenges WHERE id = $1`, id).Scan(&one)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("store: challenge %q used: %w", id, err)
	}
	return true, nil
}

// UseChallenge's ON CONFLICT DO NOTHING waits for a concurrent insert of
// the same id to commit or roll back, then inserts nothing or the row: it
// never aborts the transaction.
func (w writer) UseChallenge(ctx context.Context, id string, expiresAt time.Time) error {
	tag, err := w.q.Exec(ctx, `INSERT INTO used_challenges (id, expires_at) VALUES ($1, $2) ON CONFLICT DO NOTHING`,
		id, micros(expiresAt))
	if err != nil {
		return fmt.Errorf("store: use challenge %q: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("store: use challenge %q: %w", id, store.ErrChallengeUsed)
	}
	return nil
}

func (w writer) ChallengeKey(ctx context.Context, candidate []byte) ([]byte, error) {
	if _, err := w.q.Exec(ctx, `INSERT INTO challenge_keys (id, key) VALUES (1, $1) ON CONFLICT DO NOTHING`, candidate); err != nil {
		return nil, fmt.Errorf("store: challenge key: %w", err)
	}
	var key []byte
	if err := w.q.QueryRow(ctx, `SELECT key FROM challenge_keys WHERE id = 1`).Scan(&key); err != nil {
		return nil, fmt.Errorf("store: challenge key: %w", err)
	}
	return key, nil
}
