package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/sigil-dev/sigil/internal/store"
)

const tokenColumns = `jti, parent_jti, sub, client_id, act, aud, scope, issued_at, expires_at,
	cnf, kind, handle_hash, kid, revoked_at, revocation_reason`

func scanToken(s scanner) (store.Token, error) {
	var t store.Token
	var parent sql.NullString
	var act, aud string
	var issued, expires int64
	var revoked sql.NullInt64
	err := s.Scan(&t.JTI, &parent, &t.Sub, &t.ClientID, &act, &aud, &t.Scope, &issued, &expires,
		&t.CNF, &t.Kind, &t.HandleHash, &t.KID, &revoked, &t.RevocationReason)
	if err != nil {
		return store.Token{}, err
	}
	t.ParentJTI, t.IssuedAt, t.ExpiresAt, t.RevokedAt = parent.String, fromMicros(issued), fromMicros(expires), fromNullMicros(revoked)
	if t.Act, err = fromJSONList(act); err != nil {
		return store.Token{}, fmt.Errorf("token %q: act: %w", t.JTI, err)
	}
	if t.Aud, err = fromJSONList(aud); err != nil {
		return store.Token{}, fmt.Errorf("token %q: aud: %w", t.JTI, err)
	}
	return t, nil
}

// jsonList encodes a list of strings as a JSON array, "[]" when empty.
func jsonList(l []string) string {
	if len(l) == 0 {
		return "[]"
	}
	b, _ := json.Marshal(l) // cannot fail for strings
	return string(b)
}

func fromJSONList(s string) ([]string, error) {
	var l []string
	if err := json.Unmarshal([]byte(s), &l); err != nil {
		return nil, err
	}
	if len(l) == 0 {
		return nil, nil
	}
	return l, nil
}

func (r reader) Token(ctx context.Context, jti string) (store.Token, error) {
	row := r.q.QueryRowContext(ctx, `SELECT `+tokenColumns+` FROM tokens WHERE jti = ?`, jti)
	t, err := scanToken(row)
	if errors.Is(err, sql.ErrNoRows) {
		return store.Token{}, fmt.Errorf("store: token %q: %w", jti, store.ErrNotFound)
	}
	if err != nil {
		return store.Token{}, fmt.Errorf("store: token %q: %w", jti, err)
	}
	return t, nil
}

// TokenByHandle does not put the hash in its errors: it is derived from a
// secret.
func (r reader) TokenByHandle(ctx context.Context, handleHash []byte) (store.Token, error) {
	if len(handleHash) == 0 {
		return store.Token{}, fmt.Errorf("store: token by handle: %w", store.ErrNotFound)
	}
	row := r.q.QueryRowContext(ctx, `SELECT `+tokenColumns+` FROM tokens WHERE handle_hash = ?`, handleHash)
	t, err := scanToken(row)
	if errors.Is(err, sql.ErrNoRows) {
		return store.Token{}, fmt.Errorf("store: token by handle: %w", store.ErrNotFound)
	}
	if err != nil {
		return store.Token{}, fmt.Errorf("store: token by handle: %w", err)
	}
	return t, nil
}

func (r reader) TokenChildren(ctx context.Context, jti string) ([]store.Token, error) {
	rows, err := r.q.QueryContext(ctx, `SELECT `+tokenColumns+` FROM tokens
		WHERE parent_jti = ? ORDER BY issued_at, jti`, jti)
	if err != nil {
		return nil, fmt.Errorf("store: tokens exchanged from %q: %w", jti, err)
	}
	ts, err := scanAll(rows, scanToken)
	if err != nil {
		return nil, fmt.Errorf("store: tokens exchanged from %q: %w", jti, err)
	}
	return ts, nil
}

// InsertToken first holds the certificate the token is bound to
// (holdCertificate), then the parent: a conditional UPDATE that changes
// nothing but matches only a live parent that expires no earlier than t,
// so its row count says whether t may be exchanged from it, and the row
// lock it takes, held until commit, orders it with a RevokeToken of the
// parent on any database: a revocation that updated the parent first makes
// this match nothing (ErrRevoked); one that comes after waits for this
// transaction, and its cascade's next statement then finds t.
func (w writer) InsertToken(ctx context.Context, t store.Token) error {
	if err := t.Check(); err != nil {
		return fmt.Errorf("store: insert token %q: %w", t.JTI, err)
	}
	if t.CNF != "" { // the certificate first, as RevokeCertificate locks it before tokens
		if err := w.holdCertificate(ctx, t); err != nil {
			return err
		}
	}
	if t.ParentJTI != "" {
		if err := w.holdParent(ctx, t); err != nil {
			return err
		}
	}
	parent := sql.NullString{String: t.ParentJTI, Valid: t.ParentJTI != ""}
	_, err := w.q.ExecContext(ctx, `INSERT INTO tokens (`+tokenColumns+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, '')`,
		t.JTI, parent, t.Sub, t.ClientID, jsonList(t.Act), jsonList(t.Aud), t.Scope,
		micros(t.IssuedAt), micros(t.ExpiresAt), t.CNF, t.Kind, t.HandleHash, t.KID)
	if err != nil {
		return fmt.Errorf("store: insert token %q: %w", t.JTI, classify(err))
	}
	return nil
}

// holdParent locks t's parent if it is live and t does not outlive it.
func (w writer) holdParent(ctx context.Context, t store.Token) error {
	res, err := w.q.ExecContext(ctx, `UPDATE tokens SET revoked_at = revoked_at
		WHERE jti = ? AND revoked_at IS NULL AND expires_at >= ?`, t.ParentJTI, micros(t.ExpiresAt))
	if err != nil {
		return fmt.Errorf("store: insert token %q: parent %q: %w", t.JTI, t.ParentJTI, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("store: insert token %q: parent %q: %w", t.JTI, t.ParentJTI, err)
	}
	if n == 1 {
		return nil
	}
	return w.parentRefused(ctx, t)
}

// parentRefused says why InsertToken inserted nothing for t.
func (w writer) parentRefused(ctx context.Context, t store.Token) error {
	p, err := reader(w).Token(ctx, t.ParentJTI)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return fmt.Errorf("store: insert token %q: parent %q: %w", t.JTI, t.ParentJTI, store.ErrNotFound)
	case err != nil:
		return fmt.Errorf("store: insert token %q: %w", t.JTI, err)
	case p.RevokedAt != nil:
		return fmt.Errorf("store: insert token %q: parent %q: %w", t.JTI, t.ParentJTI, store.ErrRevoked)
	default:
		return fmt.Errorf("store: insert token %q: expires at %v, after its parent %q (%v): %w",
			t.JTI, fromMicros(micros(t.ExpiresAt)), t.ParentJTI, p.ExpiresAt, store.ErrConflict)
	}
}

// PurgeExpiredTokens deletes the tokens that expired before the given
// time, revoked or not, and with them (ON DELETE CASCADE) their revocation
// events, and returns how many tokens it deleted. A token never outlives
// its parent (InsertToken refuses one that would, and expires_at never
// changes), so the expired tokens are whole subtrees of the exchange tree:
// no stored token is left with a purged parent, and no revocation cascade
// misses a live token for its parent having been purged. The revocation
// feed keeps its numbering: a subscriber reading past purged events only
// misses revocations of tokens that have expired anyway.
func (w writer) PurgeExpiredTokens(ctx context.Context, before time.Time) (int64, error) {
	res, err := w.q.ExecContext(ctx, `DELETE FROM tokens WHERE expires_at < ?`, micros(before))
	if err != nil {
		return 0, fmt.Errorf("store: purge tokens: %w", classify(err))
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("store: purge tokens: %w", err)
	}
	return n, nil
}

// InsertExternalToken is one statement, as it runs in every exchange of an
// external subject token: an INSERT that does nothing for a stored jti (ON
// CONFLICT (jti), not OR IGNORE, which would also skip a row that breaks a
// CHECK constraint).
func (w writer) InsertExternalToken(ctx context.Context, t store.Token) error {
	if err := t.CheckExternal(); err != nil {
		return err
	}
	_, err := w.q.ExecContext(ctx, `INSERT INTO tokens (`+tokenColumns+`)
		VALUES (?, NULL, ?, '', ?, ?, ?, ?, ?, '', ?, NULL, '', NULL, '')
		ON CONFLICT (jti) DO NOTHING`,
		t.JTI, t.Sub, jsonList(t.Act), jsonList(t.Aud), t.Scope, micros(t.IssuedAt), micros(t.ExpiresAt), t.Kind)
	if err != nil {
		return fmt.Errorf("store: insert external token %q: %w", t.JTI, classify(err))
	}
	return nil
}
