package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Token kinds.
const (
	TokenJWT    = "jwt"    // an RFC 9068 JWT access token
	TokenOpaque = "opaque" // a reference token, resolved by introspection through its handle
	TokenTxn    = "txn"    // a transaction token (a JWT)

	// TokenExternal is an external issuer's subject token (a user IdP's)
	// recorded as the root of the tokens exchanged from it, so that
	// revoking it revokes them. Its JTI starts with ExternalPrefix; it has
	// no parent, client, cnf or kid.
	TokenExternal = "external"
)

// ExternalPrefix starts the JTI of a TokenExternal record, and no other.
const ExternalPrefix = "ext:"

// Token is the record of an issued access token. The token itself is never
// stored: a JWT is found by its jti, an opaque token by the SHA-256 of its
// handle.
type Token struct {
	JTI string // primary key

	// ParentJTI is the jti of the subject token this one was exchanged
	// from, a stored token (a TokenExternal one for a subject token from an
	// external issuer); "" for a root token (client credentials, or a
	// TokenExternal record). Revoking a token revokes every token
	// exchanged from it, transitively.
	ParentJTI string

	Sub       string
	ClientID  string   // the caller's SPIFFE ID
	Act       []string // the act chain, outermost actor first; empty reads back as nil
	Aud       []string // empty reads back as nil
	Scope     string
	IssuedAt  time.Time
	ExpiresAt time.Time // after IssuedAt; not after the parent's ExpiresAt
	CNF       string    // x5t#S256 of the holder's certificate
	Kind      string    // TokenJWT, TokenOpaque, TokenTxn or TokenExternal

	// HandleHash is the SHA-256 of an opaque token's handle, unique; nil
	// for a JWT. It is set exactly when Kind is TokenOpaque.
	HandleHash []byte

	KID              string     // the key that signed the token
	RevokedAt        *time.Time // nil while not revoked
	RevocationReason string
}

// RevocationEvent is one entry of the revocation feed: a token revoked.
type RevocationEvent struct {
	// Seq numbers the events from 1, in the order their revocations
	// committed, without gaps as assigned; PurgeExpiredTokens removes the
	// events of the tokens it purges.
	Seq       uint64
	JTI       string
	RevokedAt time.Time
	Reason    string
}

// MaxRevocationEvents is the most events one RevocationEvents call
// returns.
const MaxRevocationEvents = 1000

const tokenColumns = `jti, parent_jti, sub, client_id, act, aud, scope, issued_at, expires_at,
	cnf, kind, handle_hash, kid, revoked_at, revocation_reason`

func scanToken(s scanner) (Token, error) {
	var t Token
	var parent sql.NullString
	var act, aud string
	var issued, expires int64
	var revoked sql.NullInt64
	err := s.Scan(&t.JTI, &parent, &t.Sub, &t.ClientID, &act, &aud, &t.Scope, &issued, &expires,
		&t.CNF, &t.Kind, &t.HandleHash, &t.KID, &revoked, &t.RevocationReason)
	if err != nil {
		return Token{}, err
	}
	t.ParentJTI, t.IssuedAt, t.ExpiresAt, t.RevokedAt = parent.String, fromMicros(issued), fromMicros(expires), fromNullMicros(revoked)
	if t.Act, err = fromJSONList(act); err != nil {
		return Token{}, fmt.Errorf("token %q: act: %w", t.JTI, err)
	}
	if t.Aud, err = fromJSONList(aud); err != nil {
		return Token{}, fmt.Errorf("token %q: aud: %w", t.JTI, err)
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

func (r reader) Token(ctx context.Context, jti string) (Token, error) {
	row := r.q.QueryRowContext(ctx, `SELECT `+tokenColumns+` FROM tokens WHERE jti = ?`, jti)
	t, err := scanToken(row)
	if errors.Is(err, sql.ErrNoRows) {
		return Token{}, fmt.Errorf("store: token %q: %w", jti, ErrNotFound)
	}
	if err != nil {
		return Token{}, fmt.Errorf("store: token %q: %w", jti, err)
	}
	return t, nil
}

// TokenByHandle does not put the hash in its errors: it is derived from a
// secret.
func (r reader) TokenByHandle(ctx context.Context, handleHash []byte) (Token, error) {
	if len(handleHash) == 0 {
		return Token{}, fmt.Errorf("store: token by handle: %w", ErrNotFound)
	}
	row := r.q.QueryRowContext(ctx, `SELECT `+tokenColumns+` FROM tokens WHERE handle_hash = ?`, handleHash)
	t, err := scanToken(row)
	if errors.Is(err, sql.ErrNoRows) {
		return Token{}, fmt.Errorf("store: token by handle: %w", ErrNotFound)
	}
	if err != nil {
		return Token{}, fmt.Errorf("store: token by handle: %w", err)
	}
	return t, nil
}

func (r reader) TokenChildren(ctx context.Context, jti string) ([]Token, error) {
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

// check catches what the schema's CHECK constraints would, with errors
// that say what is wrong.
func (t Token) check() error {
	switch {
	case t.JTI == "":
		return errors.New("no jti")
	case t.ParentJTI == t.JTI:
		return errors.New("exchanged from itself")
	case t.Kind != TokenJWT && t.Kind != TokenOpaque && t.Kind != TokenTxn && t.Kind != TokenExternal:
		return fmt.Errorf("kind %q, want %q, %q, %q or %q", t.Kind, TokenJWT, TokenOpaque, TokenTxn, TokenExternal)
	case (t.Kind == TokenExternal) != strings.HasPrefix(t.JTI, ExternalPrefix):
		return fmt.Errorf("a %s token with jti %q: the jti of an external one, and only its, starts with %q", t.Kind, t.JTI, ExternalPrefix)
	case t.Kind == TokenExternal && (t.ParentJTI != "" || t.ClientID != "" || t.CNF != "" || t.KID != ""):
		return errors.New("an external token with a parent, client, cnf or kid")
	case (t.Kind == TokenOpaque) != (t.HandleHash != nil):
		return fmt.Errorf("a %s token with a handle hash of %d bytes: an opaque token has one, a JWT none", t.Kind, len(t.HandleHash))
	case t.HandleHash != nil && len(t.HandleHash) != 32:
		return fmt.Errorf("handle hash is %d bytes, want 32", len(t.HandleHash))
	case micros(t.ExpiresAt) <= micros(t.IssuedAt):
		return errors.New("expires before it is issued")
	}
	return nil
}

// InsertToken checks the parent in the INSERT itself, so that a token
// exchanged from a token being revoked concurrently is not left valid:
// either the revocation commits first and this fails with ErrRevoked, or
// it finds this token and revokes it too. That holds on SQLite, which
// serialises writers. PostgreSQL needs the parent row locked (SELECT …
// FOR SHARE) first, RevokeToken to repeat its cascade until it revokes
// nothing more (see there), and casts on the placeholders of
// INSERT … SELECT.
func (w writer) InsertToken(ctx context.Context, t Token) error {
	if err := t.check(); err != nil {
		return fmt.Errorf("store: insert token %q: %w", t.JTI, err)
	}
	parent := sql.NullString{String: t.ParentJTI, Valid: t.ParentJTI != ""}
	res, err := w.q.ExecContext(ctx, `INSERT INTO tokens (`+tokenColumns+`)
		SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ''
		WHERE ? IS NULL OR EXISTS (SELECT 1 FROM tokens
			WHERE jti = ? AND revoked_at IS NULL AND expires_at >= ?)`,
		t.JTI, parent, t.Sub, t.ClientID, jsonList(t.Act), jsonList(t.Aud), t.Scope,
		micros(t.IssuedAt), micros(t.ExpiresAt), t.CNF, t.Kind, t.HandleHash, t.KID,
		parent, parent, micros(t.ExpiresAt))
	if err != nil {
		return fmt.Errorf("store: insert token %q: %w", t.JTI, classify(err))
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("store: insert token %q: %w", t.JTI, err)
	}
	if n == 1 {
		return nil
	}
	return w.parentRefused(ctx, t)
}

// parentRefused says why InsertToken inserted nothing for t.
func (w writer) parentRefused(ctx context.Context, t Token) error {
	p, err := reader(w).Token(ctx, t.ParentJTI)
	switch {
	case errors.Is(err, ErrNotFound):
		return fmt.Errorf("store: insert token %q: parent %q: %w", t.JTI, t.ParentJTI, ErrNotFound)
	case err != nil:
		return fmt.Errorf("store: insert token %q: %w", t.JTI, err)
	case p.RevokedAt != nil:
		return fmt.Errorf("store: insert token %q: parent %q: %w", t.JTI, t.ParentJTI, ErrRevoked)
	default:
		return fmt.Errorf("store: insert token %q: expires at %v, after its parent %q (%v): %w",
			t.JTI, fromMicros(micros(t.ExpiresAt)), t.ParentJTI, p.ExpiresAt, ErrConflict)
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

func (s *sqliteStore) InsertToken(ctx context.Context, t Token) error {
	return s.Tx(ctx, func(tx Tx) error { return tx.InsertToken(ctx, t) })
}

// InsertExternalToken is one statement, as it runs in every exchange of an
// external subject token: an INSERT that does nothing for a stored jti (ON
// CONFLICT (jti), not OR IGNORE, which would also skip a row that breaks a
// CHECK constraint).
func (w writer) InsertExternalToken(ctx context.Context, t Token) error {
	err := t.check()
	if err == nil && t.Kind != TokenExternal {
		err = fmt.Errorf("a %s token, want %s", t.Kind, TokenExternal)
	}
	if err != nil {
		return fmt.Errorf("store: insert external token %q: %w", t.JTI, err)
	}
	_, err = w.q.ExecContext(ctx, `INSERT INTO tokens (`+tokenColumns+`)
		VALUES (?, NULL, ?, '', ?, ?, ?, ?, ?, '', ?, NULL, '', NULL, '')
		ON CONFLICT (jti) DO NOTHING`,
		t.JTI, t.Sub, jsonList(t.Act), jsonList(t.Aud), t.Scope, micros(t.IssuedAt), micros(t.ExpiresAt), t.Kind)
	if err != nil {
		return fmt.Errorf("store: insert external token %q: %w", t.JTI, classify(err))
	}
	return nil
}

func (s *sqliteStore) InsertExternalToken(ctx context.Context, t Token) error {
	return s.Tx(ctx, func(tx Tx) error { return tx.InsertExternalToken(ctx, t) })
}

func (s *sqliteStore) PurgeExpiredTokens(ctx context.Context, before time.Time) (n int64, err error) {
	err = s.Tx(ctx, func(tx Tx) error { n, err = tx.PurgeExpiredTokens(ctx, before); return err })
	return n, err
}
