package sqlite

import (
	"context"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"strings"
	"time"

	"github.com/sigil-dev/sigil/internal/store"
)

// RevokeToken revokes the token and every token exchanged from it,
// transitively, in a savepoint, so that on error nothing of it is stored
// even if fn goes on.
//
// It walks the exchange tree down one level per statement, each a
// conditional UPDATE … WHERE revoked_at IS NULL … RETURNING jti: what a
// statement returns is exactly what this call revoked, whoever else is
// revoking the same tokens, on any database. It goes down only from the
// tokens it revoked: those revoked before had their subtree revoked with
// them. Each level's statement runs after the one above it has revoked
// (and locked) its parents, so a token that InsertToken stored under one
// of them meanwhile (holding the parent, see there) is found. The events
// are numbered last, from the coordinator row token_revocation_seq, whose
// row lock orders them in commit order.
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
	level, err := w.revokeWhere(ctx, `jti = ?`, []any{jti}, reason, at)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if len(level) == 0 {
		if _, err := reader(w).Token(ctx, jti); err != nil {
			return nil, err
		}
		return []string{}, nil // revoked before, with its subtree
	}
	revoked := level
	for len(level) > 0 {
		var next []string
		for chunk := range slices.Chunk(level, maxParentsPerStatement) {
			args := inList(chunk)
			children, err := w.revokeWhere(ctx, `parent_jti IN (`+placeholders(len(args))+`)`, args, reason, at)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", what, err)
			}
			next = append(next, children...)
		}
		slices.Sort(next)
		revoked, level = append(revoked, next...), next
	}
	if err := w.appendRevocations(ctx, revoked, reason, at); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return revoked, nil
}

// maxParentsPerStatement bounds the parameters of one level's UPDATE.
const maxParentsPerStatement = 512

// revokeWhere revokes the unrevoked tokens that match cond and returns
// their jtis.
func (w writer) revokeWhere(ctx context.Context, cond string, args []any, reason string, at time.Time) ([]string, error) {
	rows, err := w.q.QueryContext(ctx, `UPDATE tokens SET revoked_at = ?, revocation_reason = ?
		WHERE `+cond+` AND revoked_at IS NULL RETURNING jti`, append([]any{micros(at), reason}, args...)...)
	if err != nil {
		return nil, err
	}
	return scanAll(rows, func(s scanner) (v string, err error) { return v, s.Scan(&v) })
}

// placeholders returns n comma-separated "?".
func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}

// inList returns l as the arguments of an IN list, padded with repeats of
// its first element to a power of two, so that a handful of statements
// (1, 2, 4… placeholders) serve every length, prepared once each.
func inList(l []string) []any {
	out := make([]any, 1<<bits.Len(uint(len(l)-1)))
	for i := range out {
		out[i] = l[0]
	}
	for i, s := range l {
		out[i] = s
	}
	return out
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

func (r reader) RevocationEvents(ctx context.Context, afterSeq uint64, limit int) ([]store.RevocationEvent, error) {
	if limit < 1 || limit > store.MaxRevocationEvents {
		limit = store.MaxRevocationEvents
	}
	if afterSeq >= math.MaxInt64 {
		return []store.RevocationEvent{}, nil
	}
	rows, err := r.q.QueryContext(ctx, `SELECT seq, jti, revoked_at, reason FROM token_revocations
		WHERE seq > ? ORDER BY seq LIMIT ?`, int64(afterSeq), limit)
	if err != nil {
		return nil, fmt.Errorf("store: revocation events after %d: %w", afterSeq, err)
	}
	es, err := scanAll(rows, func(s scanner) (store.RevocationEvent, error) {
		var e store.RevocationEvent
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
