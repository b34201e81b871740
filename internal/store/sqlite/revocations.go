package sqlite

import (
	"context"
	"database/sql"
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
		next, err := w.revokeIn(ctx, "parent_jti", level, reason, at)
		if err != nil {
			return nil, err
		}
		revoked, level = append(revoked, next...), next
	}
	return revoked, nil
}

// revokeIn revokes the unrevoked tokens whose column is one of values, in
// chunks, and returns their jtis, sorted.
func (w writer) revokeIn(ctx context.Context, column string, values []string, reason string, at time.Time) ([]string, error) {
	var out []string
	for chunk := range slices.Chunk(values, maxParentsPerStatement) {
		args := inList(chunk)
		jtis, err := w.revokeWhere(ctx, inCond(column, len(args)), args, reason, at)
		if err != nil {
			return nil, err
		}
		out = append(out, jtis...)
	}
	slices.Sort(out)
	return out, nil
}

// revokeCertificatesWhere revokes the unrevoked certificates that match
// cond, then the tokens bound to them (cnf = thumbprint) and every token
// exchanged from those, and appends their events: the certificates' first,
// by serial, then the tokens' in the order revokeBelow returns them.
//
// The certificates' UPDATE comes first and locks them, so a token that
// InsertToken stored bound to one of them meanwhile (holding it, see
// holdCertificate) is found by the tokens' statement that follows; and
// each level of the tokens' walk runs after the one above has revoked (and
// locked) its parents, as in RevokeToken.
func (w writer) revokeCertificatesWhere(ctx context.Context, cond string, args []any, reason string, at time.Time) (store.Revoked, error) {
	rows, err := w.q.QueryContext(ctx, `UPDATE certificates SET revoked_at = ?, revocation_reason = ?
		WHERE `+cond+` AND revoked_at IS NULL RETURNING serial, thumbprint`, append([]any{micros(at), reason}, args...)...)
	if err != nil {
		return store.Revoked{}, fmt.Errorf("revoke certificates: %w", err)
	}
	type cert struct{ serial, thumbprint string }
	certs, err := scanAll(rows, func(s scanner) (c cert, err error) { return c, s.Scan(&c.serial, &c.thumbprint) })
	if err != nil {
		return store.Revoked{}, fmt.Errorf("revoke certificates: %w", err)
	}
	slices.SortFunc(certs, func(a, b cert) int { return strings.Compare(a.serial, b.serial) })
	out := store.Revoked{Certificates: []string{}, Tokens: []string{}}
	var thumbprints []string
	for _, c := range certs {
		out.Certificates = append(out.Certificates, c.serial)
		if c.thumbprint != "" {
			thumbprints = append(thumbprints, c.thumbprint)
		}
	}
	if len(certs) == 0 {
		return out, nil
	}
	tokenReason := store.CertificateRevokedPrefix + reason
	if len(thumbprints) > 0 {
		bound, err := w.revokeIn(ctx, "cnf", thumbprints, tokenReason, at)
		if err != nil {
			return store.Revoked{}, fmt.Errorf("revoke tokens bound to the certificates: %w", err)
		}
		if out.Tokens, err = w.revokeBelow(ctx, bound, tokenReason, at); err != nil {
			return store.Revoked{}, fmt.Errorf("revoke tokens exchanged from those bound to the certificates: %w", err)
		}
		if out.Tokens == nil {
			out.Tokens = []string{}
		}
	}
	if err := w.appendRevocations(ctx, out.Certificates, nil, reason, at); err != nil {
		return store.Revoked{}, err
	}
	if err := w.appendRevocations(ctx, nil, out.Tokens, tokenReason, at); err != nil {
		return store.Revoked{}, err
	}
	return out, nil
}

// maxParentsPerStatement bounds the parameters of one level's UPDATE.
const maxParentsPerStatement = 512

// inCond is the condition that column is one of n values, none of them
// empty. Saying that it is not empty lets SQLite use tokens_cnf, a partial
// index of the non-empty cnf (IN alone does not imply its WHERE, and would
// scan the table).
func inCond(column string, n int) string {
	return column + ` IN (` + placeholders(n) + `) AND ` + column + ` <> ''`
}

// revokeWhere revokes the unrevoked tokens that match cond and returns
// their jtis.
func (w writer) revokeWhere(ctx context.Context, cond string, args []any, reason string, at time.Time) ([]string, error) {
	rows, err := w.q.QueryContext(ctx, revokeTokensWhere(cond), append([]any{micros(at), reason}, args...)...)
	if err != nil {
		return nil, err
	}
	return scanAll(rows, func(s scanner) (v string, err error) { return v, s.Scan(&v) })
}

// revokeTokensWhere is the statement of revokeWhere.
func revokeTokensWhere(cond string) string {
	return `UPDATE tokens SET revoked_at = ?, revocation_reason = ?
		WHERE ` + cond + ` AND revoked_at IS NULL RETURNING jti`
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

// appendRevocations numbers an event for each of serials (revoked
// certificates), then each of jtis (revoked tokens), in order, from the
// sequence row, and marks the transaction for notification after its
// COMMIT (notify.go).
func (w writer) appendRevocations(ctx context.Context, serials, jtis []string, reason string, at time.Time) error {
	n := len(serials) + len(jtis)
	if n == 0 {
		return nil
	}
	var last int64
	err := w.q.QueryRowContext(ctx, `UPDATE token_revocation_seq SET seq = seq + ? WHERE id = 1 RETURNING seq`,
		n).Scan(&last)
	if err != nil {
		return fmt.Errorf("revocation sequence: %w", err)
	}
	if q, ok := w.q.(*batchQuerier); ok {
		q.revoked = true
	}
	seq := last - int64(n)
	for _, serial := range serials {
		seq++
		_, err := w.q.ExecContext(ctx, `INSERT INTO certificate_revocations (seq, serial, revoked_at, reason)
			VALUES (?, ?, ?, ?)`, seq, serial, micros(at), reason)
		if err != nil {
			return fmt.Errorf("revocation event %d for certificate %s: %w", seq, serial, classify(err))
		}
	}
	for _, jti := range jtis {
		seq++
		_, err := w.q.ExecContext(ctx, `INSERT INTO token_revocations (seq, jti, revoked_at, reason)
			VALUES (?, ?, ?, ?)`, seq, jti, micros(at), reason)
		if err != nil {
			return fmt.Errorf("revocation event %d for %q: %w", seq, jti, classify(err))
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
	rows, err := r.q.QueryContext(ctx, `SELECT seq, jti, '', '', NULL, revoked_at, reason
			FROM token_revocations WHERE seq > ?
		UNION ALL
		SELECT e.seq, '', e.serial, c.thumbprint, c.not_after, e.revoked_at, e.reason
			FROM certificate_revocations e JOIN certificates c ON c.serial = e.serial WHERE e.seq > ?
		ORDER BY 1 LIMIT ?`, int64(afterSeq), int64(afterSeq), limit)
	if err != nil {
		return nil, fmt.Errorf("store: revocation events after %d: %w", afterSeq, err)
	}
	es, err := scanAll(rows, func(s scanner) (store.RevocationEvent, error) {
		var e store.RevocationEvent
		var seq, at int64
		var notAfter sql.NullInt64
		err := s.Scan(&seq, &e.JTI, &e.Serial, &e.Thumbprint, &notAfter, &at, &e.Reason)
		e.Seq, e.RevokedAt = uint64(seq), fromMicros(at)
		if notAfter.Valid {
			e.NotAfter = fromMicros(notAfter.Int64)
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
	if err := r.q.QueryRowContext(ctx, `SELECT seq FROM token_revocation_seq WHERE id = 1`).Scan(&seq); err != nil {
		return 0, fmt.Errorf("store: latest revocation seq: %w", err)
	}
	return uint64(seq), nil
}
