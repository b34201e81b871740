package store

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"
)

// subtreeCTE names the token whose jti is its one parameter and every
// token exchanged from it, transitively, as subtree (jti, depth), the
// token itself at depth 0. It ends: the exchange tree has no cycles, as a
// parent is stored before its children and parent_jti never changes.
const subtreeCTE = `WITH RECURSIVE subtree (jti, depth) AS (
		SELECT jti, 0 FROM tokens WHERE jti = ?
		UNION ALL
		SELECT t.jti, s.depth + 1 FROM tokens t JOIN subtree s ON t.parent_jti = s.jti
	) `

// RevokeToken revokes the token and every token exchanged from it,
// transitively, in a savepoint, so that on error nothing of it is stored
// even if fn goes on. It finds the tokens not yet revoked, in order, then
// revokes them in one UPDATE and appends their events.
//
// That is race-free in a write transaction on SQLite, which serialises
// writers. PostgreSQL needs, at READ COMMITTED: the token's row locked
// (SELECT … FOR UPDATE) first; the UPDATE to return the jtis it revoked
// (RETURNING jti), which are the ones to number, as a concurrent
// revocation may have taken some; and the cascade repeated until it
// revokes nothing more, to catch a token inserted under a parent this
// revocation had not locked yet (InsertToken locks the parent FOR SHARE).
func (w writer) RevokeToken(ctx context.Context, jti, reason string, at time.Time) ([]string, error) {
	var revoked []string
	err := w.savepoint(ctx, "revoke_token", func() error {
		var err error
		revoked, err = w.revokeToken(ctx, jti, reason, at)
		return err
	})
	if err != nil {
		return nil, err
	}
	return revoked, nil
}

func (w writer) revokeToken(ctx context.Context, jti, reason string, at time.Time) ([]string, error) {
	what := fmt.Sprintf("store: revoke token %q", jti)
	jtis, err := w.unrevokedSubtree(ctx, jti)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if len(jtis) == 0 {
		if _, err := reader(w).Token(ctx, jti); err != nil {
			return nil, err
		}
		return []string{}, nil // revoked before, with its subtree
	}
	res, err := w.q.ExecContext(ctx, subtreeCTE+`UPDATE tokens SET revoked_at = ?, revocation_reason = ?
		WHERE jti IN (SELECT jti FROM subtree) AND revoked_at IS NULL`, jti, micros(at), reason)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if n != int64(len(jtis)) { // cannot happen while writers are serialised
		return nil, fmt.Errorf("%s: revoked %d tokens, found %d to revoke", what, n, len(jtis))
	}
	if err := w.appendRevocations(ctx, jtis, reason, at); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return jtis, nil
}

// unrevokedSubtree lists the tokens of jti's subtree not yet revoked by
// depth (jti itself first), then by jti: every token after its parent.
func (w writer) unrevokedSubtree(ctx context.Context, jti string) ([]string, error) {
	rows, err := w.q.QueryContext(ctx, subtreeCTE+`SELECT s.jti FROM subtree s JOIN tokens t ON t.jti = s.jti
		WHERE t.revoked_at IS NULL ORDER BY s.depth, s.jti`, jti)
	if err != nil {
		return nil, err
	}
	return scanAll(rows, func(s scanner) (v string, err error) { return v, s.Scan(&v) })
}

// appendRevocations numbers an event for each of jtis, in order, from the
// sequence row.
func (w writer) appendRevocations(ctx context.Context, jtis []string, reason string, at time.Time) error {
	var last int64
	err := w.q.QueryRowContext(ctx, `UPDATE token_revocation_seq SET seq = seq + ? WHERE id = 1 RETURNING seq`,
		len(jtis)).Scan(&last)
	if err != nil {
		return fmt.Errorf("revocation sequence: %w", err)
	}
	first := last - int64(len(jtis)) + 1
	for i, jti := range jtis {
		_, err := w.q.ExecContext(ctx, `INSERT INTO token_revocations (seq, jti, revoked_at, reason)
			VALUES (?, ?, ?, ?)`, first+int64(i), jti, micros(at), reason)
		if err != nil {
			return fmt.Errorf("revocation event %d for %q: %w", first+int64(i), jti, classify(err))
		}
	}
	return nil
}

// savepoint runs fn in a savepoint named name, and rolls back to it if fn
// fails.
func (w writer) savepoint(ctx context.Context, name string, fn func() error) error {
	if _, err := w.q.ExecContext(ctx, `SAVEPOINT `+name); err != nil {
		return fmt.Errorf("store: %s: savepoint: %w", name, err)
	}
	err := fn()
	ctx = context.WithoutCancel(ctx) // close the savepoint whatever ctx does
	if err != nil {
		if _, rbErr := w.q.ExecContext(ctx, `ROLLBACK TO `+name); rbErr != nil {
			err = errors.Join(err, fmt.Errorf("store: %s: rollback: %w", name, rbErr))
		}
	}
	if _, relErr := w.q.ExecContext(ctx, `RELEASE `+name); relErr != nil && err == nil {
		err = fmt.Errorf("store: %s: release savepoint: %w", name, relErr)
	}
	return err
}

func (r reader) RevocationEvents(ctx context.Context, afterSeq uint64, limit int) ([]RevocationEvent, error) {
	if limit < 1 || limit > MaxRevocationEvents {
		limit = MaxRevocationEvents
	}
	if afterSeq >= math.MaxInt64 {
		return []RevocationEvent{}, nil
	}
	rows, err := r.q.QueryContext(ctx, `SELECT seq, jti, revoked_at, reason FROM token_revocations
		WHERE seq > ? ORDER BY seq LIMIT ?`, int64(afterSeq), limit)
	if err != nil {
		return nil, fmt.Errorf("store: revocation events after %d: %w", afterSeq, err)
	}
	es, err := scanAll(rows, func(s scanner) (RevocationEvent, error) {
		var e RevocationEvent
		var seq, at int64
		err := s.Scan(&seq, &e.JTI, &at, &e.Reason)
		e.Seq, e.RevokedAt = uint64(seq), fromMicros(at)
		return e, err
	})
	if err != nil {
		return nil, fmt.Errorf("store: revocation events after %d: %w", afterSeq, err)
	}
	return es, nil
}

func (r reader) LatestRevocationSeq(ctx context.Context) (uint64, error) {
	var seq int64
	if err := r.q.QueryRowContext(ctx, `SELECT seq FROM token_revocation_seq WHERE id = 1`).Scan(&seq); err != nil {
		return 0, fmt.Errorf("store: latest revocation seq: %w", err)
	}
	return uint64(seq), nil
}

func (s *sqliteStore) RevokeToken(ctx context.Context, jti, reason string, at time.Time) (revoked []string, err error) {
	err = s.Tx(ctx, func(tx Tx) error { revoked, err = tx.RevokeToken(ctx, jti, reason, at); return err })
	return revoked, err
}
