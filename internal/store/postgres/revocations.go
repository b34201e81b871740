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
	revoked, err := w.revokeBelow(ctx, level, reason, at)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if err := w.appendRevocations(ctx, nil, revoked, reason, at); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return revoked, nil
}

// revokeBelow revokes, one level per statement, every unrevoked token
// exchanged from the tokens of level (just revoked), transitively, and
// returns level followed by them, by depth and by jti within a depth.
func (w writer) revokeBelow(ctx context.Context, level []string, reason string, at time.Time) ([]string, error) {
	revoked := level
	for len(level) > 0 {
		next, err := w.revokeWhere(ctx, `parent_jti = ANY($3)`, level, reason, at)
		if err != nil {
			return nil, err
		}
		slices.Sort(next)
		revoked, level = append(revoked, next...), next
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

// appendRevocations numbers an event for each of serials (revoked
// certificates), then each of jtis (revoked tokens), in order, from the
// sequence row, and notifies listeners of the last one at commit.
func (w writer) appendRevocations(ctx context.Context, serials, jtis []string, reason string, at time.Time) error {
	n := len(serials) + len(jtis)
	if n == 0 {
		return nil
	}
	var last int64
	err := w.q.QueryRow(ctx, `UPDATE token_revocation_seq SET seq = seq + $1 WHERE id = 1 RETURNING seq`, n).Scan(&last)
	if err != nil {
		return fmt.Errorf("revocation sequence: %w", err)
	}
	first := last - int64(n) + 1
	if serials == nil {
		serials = []string{}
	}
	if jtis == nil {
		jtis = []string{}
	}
	b := &pgx.Batch{}
	b.Queue(`INSERT INTO certificate_revocations (seq, serial, revoked_at, reason)
		SELECT $1 + o - 1, s, $3, $4 FROM unnest($2::text[]) WITH ORDINALITY AS u(s, o)`,
		first, serials, micros(at), reason)
	b.Queue(`INSERT INTO token_revocations (seq, jti, revoked_at, reason)
		SELECT $1 + o - 1, j, $3, $4 FROM unnest($2::text[]) WITH ORDINALITY AS u(j, o)`,
		first+int64(len(serials)), jtis, micros(at), reason)
	b.Queue(`SELECT pg_notify($1, $2)`, w.channel, strconv.FormatInt(last, 10))
	if err := w.batch(ctx, b); err != nil {
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
	rows, err := r.q.Query(ctx, `SELECT seq, jti, '', '', NULL::bigint, revoked_at, reason
			FROM token_revocations WHERE seq > $1
		UNION ALL
		SELECT e.seq, '', e.serial, c.thumbprint, c.not_after, e.revoked_at, e.reason
			FROM certificate_revocations e JOIN certificates c ON c.serial = e.serial WHERE e.seq > $1
		ORDER BY 1 LIMIT $2`, int64(afterSeq), limit)
	if err != nil {
		return nil, fmt.Errorf("store: revocation events after %d: %w", afterSeq, err)
	}
	es, err := scanAll(rows, func(s pgx.Row) (store.RevocationEvent, error) {
		var e store.RevocationEvent
		var seq, at int64
		var notAfter *int64
		err := s.Scan(&seq, &e.JTI, &e.Serial, &e.Thumbprint, &notAfter, &at, &e.Reason)
		e.Seq, e.RevokedAt = uint64(seq), fromMicros(at)
		if notAfter != nil {
			e.NotAfter = fromMicros(*notAfter)
		}
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
