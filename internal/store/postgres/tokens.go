package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/sigil-dev/sigil/internal/store"
)

const tokenColumns = `jti, parent_jti, sub, client_id, act, aud, scope, issued_at, expires_at,
	cnf, kind, handle_hash, kid, revoked_at, revocation_reason`

func scanToken(s pgx.Row) (store.Token, error) {
	var t store.Token
	var parent *string
	var act, aud string
	var issued, expires int64
	var revoked *int64
	err := s.Scan(&t.JTI, &parent, &t.Sub, &t.ClientID, &act, &aud, &t.Scope, &issued, &expires,
		&t.CNF, &t.Kind, &t.HandleHash, &t.KID, &revoked, &t.RevocationReason)
	if err != nil {
		return store.Token{}, err
	}
	if parent != nil {
		t.ParentJTI = *parent
	}
	t.IssuedAt, t.ExpiresAt, t.RevokedAt = fromMicros(issued), fromMicros(expires), fromNullMicros(revoked)
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

// nullString is s, or NULL for "".
func nullString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func (r reader) Token(ctx context.Context, jti string) (store.Token, error) {
	t, err := scanToken(r.q.QueryRow(ctx, `SELECT `+tokenColumns+` FROM tokens WHERE jti = $1`, jti))
	if errors.Is(err, pgx.ErrNoRows) {
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
	t, err := scanToken(r.q.QueryRow(ctx, `SELECT `+tokenColumns+` FROM tokens WHERE handle_hash = $1`, handleHash))
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Token{}, fmt.Errorf("store: token by handle: %w", store.ErrNotFound)
	}
	if err != nil {
		return store.Token{}, fmt.Errorf("store: token by handle: %w", err)
	}
	return t, nil
}

func (r reader) TokenChildren(ctx context.Context, jti string) ([]store.Token, error) {
	rows, err := r.q.Query(ctx, `SELECT `+tokenColumns+` FROM tokens
		WHERE parent_jti = $1 ORDER BY issued_at, jti`, jti)
	if err != nil {
		return nil, fmt.Errorf("store: tokens exchanged from %q: %w", jti, err)
	}
	ts, err := scanAll(rows, scanToken)
	if err != nil {
		return nil, fmt.Errorf("store: tokens exchanged from %q: %w", jti, err)
	}
	return ts, nil
}

// InsertToken first holds the certificate t is bound to
// (holdCertificate), then locks the parent FOR SHARE if it is live and t
// does not outlive it: concurrent exchanges from one parent share the lock; a
// RevokeToken's UPDATE of the parent waits for them, and its cascade's
// next statement then finds t; an insert after that UPDATE waits for the
// revocation to commit, re-reads the parent and matches nothing
// (ErrRevoked). A taken jti or handle inserts nothing (ON CONFLICT DO
// NOTHING), so the transaction goes on.
func (w writer) InsertToken(ctx context.Context, t store.Token) error {
	if err := t.Check(); err != nil {
		return fmt.Errorf("store: insert token %q: %w", t.JTI, err)
	}
	b := &pgx.Batch{}
	if t.CNF != "" { // the certificate first, as RevokeCertificate locks it before tokens
		b.Queue(holdCertificate, t.CNF)
	}
	if t.ParentJTI != "" {
		b.Queue(holdParent, t.ParentJTI, micros(t.ExpiresAt))
	}
	b.Queue(insertToken, t.JTI, nullString(t.ParentJTI), t.Sub, t.ClientID, jsonList(t.Act), jsonList(t.Aud), t.Scope,
		micros(t.IssuedAt), micros(t.ExpiresAt), t.CNF, t.Kind, t.HandleHash, t.KID)
	res := w.q.SendBatch(ctx, b)
	held, err := w.readHolds(res, t)
	if err != nil {
		res.Close()
		return err
	}
	tag, err := res.Exec()
	if err = errors.Join(err, res.Close()); err != nil {
		return fmt.Errorf("store: insert token %q: %w", t.JTI, classify(err))
	}
	switch {
	case !held:
		return w.parentRefused(ctx, t)
	case tag.RowsAffected() == 0:
		return fmt.Errorf("store: insert token %q: jti or handle taken: %w", t.JTI, store.ErrConflict)
	}
	return nil
}

// InsertToken's statements, sent in one round trip (a pgx batch, which
// runs them in order in the transaction). holdCertificate locks the
// certificate the token is bound to (its CNF) FOR SHARE, as
// InsertCertificate holds the device: a revocation whose UPDATE came first
// makes it wait for it and then read the revoked row
// (ErrCertificateRevoked); one that comes after waits for this
// transaction, and its next statement finds the token by its cnf. A CNF
// that is no stored certificate's thumbprint holds nothing. holdParent
// locks the parent FOR SHARE alike. The INSERT, sent before their answers
// are read, checks the same conditions itself, so it inserts nothing
// unless both held, whatever the caller does with the error: the
// certificate (if on record) is not revoked, and the parent is live and
// expires no earlier than the token. Each names the condition of the
// partial index on thumbprint (thumbprint is not empty), so that the statement's
// generic plan, which PostgreSQL settles on after five runs, can use it:
// without it, that plan scans the table.
const (
	holdCertificate = `SELECT serial, revoked_at IS NOT NULL FROM certificates
		WHERE thumbprint = $1 AND thumbprint <> '' FOR SHARE`
	holdParent  = `SELECT 1 FROM tokens WHERE jti = $1 AND revoked_at IS NULL AND expires_at >= $2 FOR SHARE`
	insertToken = `INSERT INTO tokens (` + tokenColumns + `)
		SELECT $1, $2::text, $3, $4, $5, $6, $7, $8::bigint, $9::bigint, $10::text, $11, $12::bytea, $13, NULL, ''
		WHERE NOT EXISTS (SELECT 1 FROM certificates WHERE thumbprint = $10 AND thumbprint <> '' AND revoked_at IS NOT NULL)
		AND ($2 IS NULL OR EXISTS (SELECT 1 FROM tokens WHERE jti = $2 AND revoked_at IS NULL AND expires_at >= $9))
		ON CONFLICT DO NOTHING`
)

// readHolds reads the results of the hold statements InsertToken queued
// for t: an error for a revoked certificate, and whether the parent (if
// any) was held.
func (w writer) readHolds(res pgx.BatchResults, t store.Token) (parentHeld bool, err error) {
	if t.CNF != "" {
		var serial string
		var revoked bool
		err := res.QueryRow().Scan(&serial, &revoked)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
		case err != nil:
			return false, fmt.Errorf("store: insert token %q: certificate %s: %w", t.JTI, t.CNF, err)
		case revoked:
			return false, fmt.Errorf("store: insert token %q: certificate %s: %w", t.JTI, serial, store.ErrCertificateRevoked)
		}
	}
	if t.ParentJTI == "" {
		return true, nil
	}
	var one int
	err = res.QueryRow().Scan(&one)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("store: insert token %q: parent %q: %w", t.JTI, t.ParentJTI, err)
	}
	return true, nil
}

// parentRefused says why InsertToken inserted nothing for t.
func (w writer) parentRefused(ctx context.Context, t store.Token) error {
	p, err := w.reader().Token(ctx, t.ParentJTI)
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
// time and with them (ON DELETE CASCADE) their revocation events; see the
// SQLite backend for why that takes whole subtrees.
func (w writer) PurgeExpiredTokens(ctx context.Context, before time.Time) (int64, error) {
	tag, err := w.q.Exec(ctx, `DELETE FROM tokens WHERE expires_at < $1`, micros(before))
	if err != nil {
		return 0, fmt.Errorf("store: purge tokens: %w", classify(err))
	}
	return tag.RowsAffected(), nil
}

// InsertExternalToken is one statement: an INSERT that does nothing for a
// stored jti.
func (w writer) InsertExternalToken(ctx context.Context, t store.Token) error {
	if err := t.CheckExternal(); err != nil {
		return err
	}
	_, err := w.q.Exec(ctx, insertExternalToken,
		t.JTI, t.Sub, jsonList(t.Act), jsonList(t.Aud), t.Scope, micros(t.IssuedAt), micros(t.ExpiresAt), t.Kind)
	if err != nil {
		return fmt.Errorf("store: insert external token %q: %w", t.JTI, classify(err))
	}
	return nil
}
