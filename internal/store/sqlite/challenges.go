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
	res, err := w.q.ExecContext(ctx, `DELETE FROM challenges WHERE expires_at < ?`, micros(before))
	if err != nil {
		return 0, fmt.Errorf("store: purge challenges: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("store: purge challenges: %w", err)
	}
	return n, nil
}
