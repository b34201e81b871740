package postgres

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/sigil-dev/sigil/internal/store"
)

// revocationChannel names the channel RevokeToken notifies, in its
// transaction, with the Seq of its last event: PostgreSQL delivers it to
// every listener on the database, on any replica, when the transaction
// commits. Channels are per database, not per schema: the name carries the
// store's schema, so that stores in two schemas of one database do not
// hear each other.
func revocationChannel(ctx context.Context, q querier) (string, error) {
	var schema string
	if err := q.QueryRow(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
		return "", fmt.Errorf("store: open postgres: current schema: %w", err)
	}
	return "sigil_revocations." + schema, nil
}

// RevokeToken walks the exchange tree down one level per statement, each
// a conditional UPDATE … WHERE revoked_at IS NULL … RETURNING jti: what a
// statement returns is exactly what this call revoked, whoever else is
// revoking the same tokens (a row another revocation updated first is
// re-read when it commits and no longer matches). It goes down only from
// the tokens it revoked. Each level's statement runs after the one above
// it has locked its parents, so a token InsertToken stored under one of
// them meanwhile (holding the parent FOR SHARE, which the UPDATE waited
// for) is found. The events are numbered last, from the coordinator row
// token_revocation_seq, whose row lock orders them in commit order. A
// statement that fails aborts the whole transaction, so nothing of a
// failed call is ever committed.
func (w writer) RevokeToken(ctx context.Context, jti, reason string, at time.Time) ([]string, error) {
	what := fmt.Sprintf("store: revoke token %q", jti)
	level, err := w.revokeWhere(ctx, `jti = $3`, jti, reason, at)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if len(level) == 0 {
		if _, err := w.reader().Token(ctx, jti); err != nil {
			return nil, err
		}
		return []string{}, nil // revoked before, with its subtree
	}
	revoked := level
	for len(level) > 0 {
		next, err := w.revokeWhere(ctx, `parent_jti = ANY($3)`, level, reason, at)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		slices.Sort(next)
		revoked, level = append(revoked, next...), next
	}
	if err := w.appendRevocations(ctx, revoked, reason, at); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return revoked, nil
}

// revokeWhere revokes the unrevoked tokens that match cond, on arg, and
// returns their jtis.
func (w writer) revokeWhere(ctx context.Context, cond string, arg any, reason string, at time.Time) ([]string, error) {
	rows, err := w.q.Query(ctx, `UPDATE tokens SET revoked_at = $1, revocation_reason = $2
		WHERE `+cond+` AND revoked_at IS NULL RETURNING jti`, micros(at), reason, arg)
	if err != nil {
		return nil, err
	}
	return scanAll(rows, scanString)
}

// appendRevocations numbers an event for each of jtis, in order, from the
// sequence row, and notifies listeners of the last one at commit.
func (w writer) appendRevocations(ctx context.Context, jtis []string, reason string, at time.Time) error {
	var last int64
	err := w.q.QueryRow(ctx, `UPDATE token_revocation_seq SET seq = seq + $1 WHERE id = 1 RETURNING seq`,
		len(jtis)).Scan(&last)
	if err != nil {
		return fmt.Errorf("revocation sequence: %w", err)
	}
	first := last - int64(len(jtis)) + 1
	b := &pgx.Batch{}
	b.Queue(`INSERT INTO token_revocations (seq, jti, revoked_at, reason)
		SELECT $1 + o - 1, j, $3, $4 FROM unnest($2::text[]) WITH ORDINALITY AS u(j, o)`,
		first, jtis, micros(at), reason)
	b.Queue(`SELECT pg_notify($1, $2)`, w.channel, strconv.FormatInt(last, 10))
	if err := w.q.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("revocation events %d to %d: %w", first, last, classify(err))
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
	rows, err := r.q.Query(ctx, `SELECT seq, jti, revoked_at, reason FROM token_revocations
		WHERE seq > $1 ORDER BY seq LIMIT $2`, int64(afterSeq), limit)
	if err != nil {
		return nil, fmt.Errorf("store: revocation events after %d: %w", afterSeq, err)
	}
	es, err := scanAll(rows, func(s pgx.Row) (store.RevocationEvent, error) {
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
	if err := r.q.QueryRow(ctx, `SELECT seq FROM token_revocation_seq WHERE id = 1`).Scan(&seq); err != nil {
		return 0, fmt.Errorf("store: latest revocation seq: %w", err)
	}
	return uint64(seq), nil
}
