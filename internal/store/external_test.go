package store

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// externalToken is the record of a user IdP's token for the frontend,
// valid for an hour from t0.
func externalToken(jti string) Token {
	return Token{
		JTI: jti, Sub: "alice@idp.test", Aud: []string{"spiffe://sigil.test/workload/frontend"},
		Scope: "read", IssuedAt: t0, ExpiresAt: t0.Add(time.Hour), Kind: TokenExternal,
	}
}

// An external token's record is stored once, by its first insert; tokens
// exchanged from it are its children, revoked with it; once revoked it
// stays revoked and refuses children.
func TestExternalToken(t *testing.T) {
	st, _ := openStore(t)
	ctx := context.Background()
	ext := externalToken("ext:alice")
	ext.Act = []string{"https://idp.test/agent"}
	other := externalToken("ext:alice")
	other.Sub, other.ExpiresAt = "mallory@idp.test", t0.Add(2*time.Hour)
	for _, tok := range []Token{ext, other} {
		if err := st.InsertExternalToken(ctx, tok); err != nil {
			t.Fatalf("InsertExternalToken(%s): %v", tok.Sub, err)
		}
	}
	if got, err := st.Token(ctx, ext.JTI); err != nil || !reflect.DeepEqual(got, ext) {
		t.Fatalf("Token = %+v, %v\nwant the first insert's %+v", got, err, ext)
	}
	insertTokens(t, st, testToken("A", ext.JTI), testToken("B", "A"), testToken("C", ""))
	revoked, err := st.RevokeToken(ctx, ext.JTI, "revoked by its audience", t0)
	if want := []string{ext.JTI, "A", "B"}; err != nil || !slices.Equal(revoked, want) {
		t.Fatalf("RevokeToken = %v, %v; want %v", revoked, err, want)
	}
	if err := st.InsertExternalToken(ctx, ext); err != nil {
		t.Fatalf("InsertExternalToken of a revoked one: %v", err)
	}
	if got, err := st.Token(ctx, ext.JTI); err != nil || got.RevokedAt == nil {
		t.Fatalf("after inserting it again: %+v, %v; want still revoked", got, err)
	}
	if err := st.InsertToken(ctx, testToken("D", ext.JTI)); !errors.Is(err, ErrRevoked) {
		t.Fatalf("InsertToken exchanged from a revoked external token = %v, want ErrRevoked", err)
	}
	events, err := st.RevocationEvents(ctx, 0, 0)
	if err != nil || len(events) != 3 || events[0].JTI != ext.JTI {
		t.Fatalf("RevocationEvents = %+v, %v; want the external token's first, then A and B", events, err)
	}
}

// The "ext:" namespace belongs to external tokens: none of ours takes it,
// no external token is outside it, and an external token is a root with no
// client, cnf or kid.
func TestExternalTokenRefused(t *testing.T) {
	ext := func(f func(*Token)) Token {
		tok := externalToken("ext:alice")
		f(&tok)
		return tok
	}
	ours := testToken("ext:ours", "")
	for _, tc := range []struct {
		name     string
		tok      Token
		external bool // InsertExternalToken, else InsertToken
		text     string
	}{
		{"ours in the external namespace", ours, false, `jti "ext:ours"`},
		{"ours as external", testToken("plain", ""), true, "want external"},
		{"ours in the namespace as external", ours, true, `jti "ext:ours"`},
		{"external outside the namespace", ext(func(t *Token) { t.JTI = "alice" }), true, `jti "alice"`},
		{"external outside the namespace as ours", ext(func(t *Token) { t.JTI = "alice" }), false, `jti "alice"`},
		{"external with a parent", ext(func(t *Token) { t.ParentJTI = "live" }), true, "with a parent"},
		{"external with a client", ext(func(t *Token) { t.ClientID = "spiffe://sigil.test/workload/a" }), true, "client"},
		{"external with a cnf", ext(func(t *Token) { t.CNF = "x5t" }), true, "cnf"},
		{"external with a kid", ext(func(t *Token) { t.KID = "token-1" }), true, "kid"},
		{"external expiring when issued", ext(func(t *Token) { t.ExpiresAt = t.IssuedAt }), true, "expires before it is issued"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, _ := openStore(t)
			ctx := context.Background()
			insertTokens(t, st, testToken("live", ""))
			insert := st.InsertToken
			if tc.external {
				insert = st.InsertExternalToken
			}
			err := insert(ctx, tc.tok)
			if err == nil || !strings.Contains(err.Error(), tc.text) {
				t.Fatalf("insert = %v, want it to say %q", err, tc.text)
			}
			if _, err := st.Token(ctx, tc.tok.JTI); !errors.Is(err, ErrNotFound) {
				t.Fatalf("refused token stored: %v", err)
			}
		})
	}
}

// TestMigrateExternalTokens: migration 0005 rebuilds the tokens table of a
// database at version 4 keeping every token, revocation and event, and the
// triggers, keys and indexes, and its constraints hold external tokens to
// their namespace below the Go checks.
func TestMigrateExternalTokens(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sigil.db")
	db, err := openSQLitePool(ctx, path+"?_txlock=immediate&_pragma=foreign_keys(1)&_pragma=journal_mode(WAL)", 1)
	if err != nil {
		t.Fatal(err)
	}
	ms, err := loadMigrations(sqliteMigrations, "migrations/sqlite")
	if err != nil || len(ms) < 5 || ms[4].name != "external_tokens" {
		t.Fatalf("loadMigrations = %d, %v; want 0005_external_tokens", len(ms), err)
	}
	if err := migrate(ctx, db, ms[:4]); err != nil {
		t.Fatal(err)
	}
	w := writer{sqlQuerier{db}}
	before := []Token{testToken("A", ""), testToken("B", "A"), testToken("C", "B"), opaqueToken("D", "A"), testToken("E", "")}
	for _, tok := range before {
		if err := w.InsertToken(ctx, tok); err != nil {
			t.Fatal(err)
		}
	}
	for _, jti := range []string{"E", "B"} {
		if _, err := w.RevokeToken(ctx, jti, "compromised", t0); err != nil {
			t.Fatal(err)
		}
	}
	r := reader{sqlQuerier{db}}
	wantEvents, _ := r.RevocationEvents(ctx, 0, 0)
	var wantTokens []Token
	for _, tok := range before {
		rec, _ := r.Token(ctx, tok.JTI)
		wantTokens = append(wantTokens, rec)
	}
	db.Close()

	st := openPath(t, path)
	for _, want := range wantTokens {
		if got, err := st.Token(ctx, want.JTI); err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("Token(%s) after migration = %+v, %v\nwant %+v", want.JTI, got, err, want)
		}
	}
	if got, err := st.RevocationEvents(ctx, 0, 0); err != nil || len(wantEvents) != 3 || !reflect.DeepEqual(got, wantEvents) {
		t.Errorf("RevocationEvents after migration = %+v, %v\nwant %+v", got, err, wantEvents)
	}
	if seq, err := st.LatestRevocationSeq(ctx); err != nil || seq != 3 {
		t.Errorf("LatestRevocationSeq = %d, %v; want 3", seq, err)
	}
	if got, err := st.TokenByHandle(ctx, handleHash("D")); err != nil || got.JTI != "D" {
		t.Errorf("TokenByHandle after migration = %+v, %v", got, err)
	}
	if err := st.InsertToken(ctx, testToken("F", "nope")); !errors.Is(err, ErrNotFound) {
		t.Errorf("InsertToken under an unknown parent = %v, want ErrNotFound", err)
	}
	if err := st.InsertExternalToken(ctx, externalToken("ext:alice")); err != nil {
		t.Errorf("InsertExternalToken = %v", err)
	}

	// Below the Go checks: the schema itself.
	raw := writer{sqlQuerier{st.(*sqliteStore).w}}
	for _, tc := range []struct{ name, sql, text string }{
		{"immutable tokens", `UPDATE tokens SET sub = 'x' WHERE jti = 'A'`, "immutable"},
		{"append-only events", `UPDATE token_revocations SET reason = 'x'`, "append-only"},
		{"ours in the external namespace", insertSQL("'ext:x'", "'jwt'", "''", "''"), "CHECK"},
		{"external outside the namespace", insertSQL("'x'", "'external'", "''", "''"), "CHECK"},
		{"external with a client", insertSQL("'ext:x'", "'external'", "'spiffe://sigil.test/a'", "''"), "CHECK"},
		{"external with a cnf", insertSQL("'ext:x'", "'external'", "''", "'x5t'"), "CHECK"},
		{"unknown kind", insertSQL("'x'", "'refresh'", "''", "''"), "CHECK"},
	} {
		if _, err := raw.q.ExecContext(ctx, tc.sql); err == nil || !strings.Contains(err.Error(), tc.text) {
			t.Errorf("%s: %v, want an error saying %q", tc.name, err, tc.text)
		}
	}
	// Purging still takes the events with the tokens (ON DELETE CASCADE).
	if n, err := st.PurgeExpiredTokens(ctx, t0.Add(2*time.Hour)); err != nil || n != 6 {
		t.Fatalf("PurgeExpiredTokens = %d, %v; want 6", n, err)
	}
	if got, err := st.RevocationEvents(ctx, 0, 0); err != nil || len(got) != 0 {
		t.Fatalf("events after purging = %+v, %v; want none", got, err)
	}
}

// insertSQL inserts a token with the given SQL literals.
func insertSQL(jti, kind, clientID, cnf string) string {
	return `INSERT INTO tokens (jti, sub, client_id, scope, issued_at, expires_at, cnf, kind, kid)
		VALUES (` + jti + `, 'alice', ` + clientID + `, '', 1, 2, ` + cnf + `, ` + kind + `, '')`
}

// BenchmarkExternalTokenTx is BenchmarkTokenTx for an exchange of a user
// IdP token: the Tx also inserts the user token's record, which is stored
// already but for the first (compare with BenchmarkTokenTx).
func BenchmarkExternalTokenTx(b *testing.B) {
	for _, goroutines := range []int{1, 64} {
		b.Run(fmt.Sprintf("goroutines=%d", goroutines), func(b *testing.B) {
			ctx := context.Background()
			st := openPath(b, filepath.Join(b.TempDir(), "sigil.db"))
			ext := externalToken("ext:alice")
			driveTx(b, goroutines, func(i int64) error {
				tok := testToken(fmt.Sprintf("bench-%d", i), ext.JTI)
				return st.Tx(ctx, func(tx Tx) error {
					if err := tx.InsertExternalToken(ctx, ext); err != nil {
						return err
					}
					if err := tx.InsertToken(ctx, tok); err != nil {
						return err
					}
					_, err := tx.AppendAudit(ctx, testEntry(tok.JTI, "jti:"+tok.JTI))
					return err
				})
			})
		})
	}
}
