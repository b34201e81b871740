package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/sigil-dev/sigil/internal/store"
)

const challengeColumns = `id, ek_hash, ak_hash, nonce, secret_hash, spiffe_id, kind, pending,
	created_at, expires_at, consumed_at`

func scanChallenge(s scanner) (store.Challenge, error) {
	var c store.Challenge
	var created, expires int64
	var consumed sql.NullInt64
	err := s.Scan(&c.ID, &c.EKHash, &c.AKHash, &c.Nonce, &c.SecretHash, &c.SPIFFEID, &c.Kind,
		&c.Pending, &created, &expires, &consumed)
	c.CreatedAt, c.ExpiresAt, c.ConsumedAt = fromMicros(created), fromMicros(expires), fromNullMicros(consumed)
	return c, err
}

func (r reader) Challenge(ctx context.Context, id string) (store.Challenge, error) {
	row := r.q.QueryRowContext(ctx, `SELECT `+challengeColumns+` FROM challenges WHERE id = ?`, id)
	c, err := scanChallenge(row)
	if errors.Is(err, sql.ErrNoRows) {
		return store.Challenge{}, fmt.Errorf("store: challenge %q: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.Challenge{}, fmt.Errorf("store: challenge %q: %w", id, err)
	}
	return c, nil
}

// CreateChallenge ignores c.ConsumedAt: a new challenge is unused.
func (w writer) CreateChallenge(ctx context.Context, c store.Challenge) error {
	_, err := w.q.ExecContext(ctx, `INSERT INTO challenges (`+challengeColumns+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)`,
		c.ID, c.EKHash, c.AKHash, c.Nonce, c.SecretHash, c.SPIFFEID, string(c.Kind), c.Pending,
		micros(c.CreatedAt), micros(c.ExpiresAt))
	if err != nil {
		return fmt.Errorf("store: create challenge %q: %w", c.ID, classify(err))
	}
	return nil
}

// ConsumeChallenge is a single conditional UPDATE, so it is atomic on any
// database without relying on the transaction's isolation level.
func (w writer) ConsumeChallenge(ctx context.Context, id string, now time.Time) (store.Challenge, error) {
	row := w.q.QueryRowContext(ctx, `UPDATE challenges SET consumed_at = ?
		WHERE id = ? AND consumed_at IS NULL AND expires_at > ?
		RETURNING `+challengeColumns, micros(now), id, micros(now))
	c, err := scanChallenge(row)
	if err == nil {
		return c, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return store.Challenge{}, fmt.Errorf("store: consume challenge %q: %w", id, err)
	}
	// Nothing updated: say why.
	c, err = reader(w).Challenge(ctx, id)
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
	for _, q := range []string{`DELETE FROM challenges WHERE expires_at < ?`, `DELETE FROM used_challenges WHERE expires_at < ?`} {
		res, err := w.q.ExecContext(ctx, q, micros(before))
		if err != nil {
			return 0, fmt.Errorf("store: purge challenges: %w", err)
		}
		d, err := res.RowsAffected()
		if err != nil {
			return 0, fmt.Errorf("store: purge challenges: %w", err)
		}
		n += d
	}
	return n, nil
}

func (r reader) ChallengeUsed(ctx context.Context, id string) (bool, error) {
	var one int
	err := r.q.QueryRowContext(ctx, `SELECT 1 FROM used_challenges WHERE id = ?`, id).Scan(&one)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("store: challenge %q used: %w", id, err)
	}
	return true, nil
}

func (w writer) UseChallenge(ctx context.Context, id string, expiresAt time.Time) error {
	res, err := w.q.ExecContext(ctx, `INSERT INTO used_challenges (id, expires_at) VALUES (?, ?) ON CONFLICT DO NOTHING`,
		id, micros(expiresAt))
	if err != nil {
		return fmt.Errorf("store: use challenge %q: %w", id, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("store: use challenge %q: %w", id, err)
	} else if n == 0 {
		return fmt.Errorf("store: use challenge %q: %w", id, store.ErrChallengeUsed)
	}
	return nil
}

func (w writer) ChallengeKey(ctx context.Context, candidate []byte) ([]byte, error) {
	if _, err := w.q.ExecContext(ctx, `INSERT INTO challenge_keys (id, key) VALUES (1, ?) ON CONFLICT DO NOTHING`, candidate); err != nil {
		return nil, fmt.Errorf("store: challenge key: %w", err)
	}
	var key []byte
	if err := w.q.QueryRowContext(ctx, `SELECT key FROM challenge_keys WHERE id = 1`).Scan(&key); err != nil {
		return nil, fmt.Errorf("store: challenge key: %w", err)
	}
	return key, nil
}
