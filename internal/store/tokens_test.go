package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// testToken is a JWT exchanged from parent ("" for a root token), valid
// for an hour from t0.
func testToken(jti, parent string) Token {
	return Token{
		JTI:       jti,
		ParentJTI: parent,
		Sub:       "spiffe://sigil.test/user/alice",
		ClientID:  "spiffe://sigil.test/workload/" + jti,
		Aud:       []string{"spiffe://sigil.test/api"},
		Scope:     "read write",
		IssuedAt:  t0,
		ExpiresAt: t0.Add(time.Hour),
		CNF:       "x5t-" + jti,
		Kind:      TokenJWT,
		KID:       "token-1",
	}
}

func handleHash(jti string) []byte {
	h := sha256.Sum256([]byte("handle-" + jti))
	return h[:]
}

func opaqueToken(jti, parent string) Token {
	t := testToken(jti, parent)
	t.Kind, t.HandleHash = TokenOpaque, handleHash(jti)
	return t
}

func insertTokens(t testing.TB, st Store, ts ...Token) {
	t.Helper()
	err := st.Tx(context.Background(), func(tx Tx) error {
		for _, tok := range ts {
			if err := tx.InsertToken(context.Background(), tok); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("insert tokens: %v", err)
	}
}

// tokenTree stores A→B→C, A→D and an unrelated E.
func tokenTree(t testing.TB, st Store) {
	t.Helper()
	insertTokens(t, st, testToken("A", ""), testToken("B", "A"), testToken("C", "B"),
		testToken("D", "A"), testToken("E", ""))
}

func TestTokenRoundTrip(t *testing.T) {
	st, _ := openStore(t)
	ctx := context.Background()
	root := testToken("root", "")
	opaque := opaqueToken("opaque", "root")
	opaque.Act = []string{"spiffe://sigil.test/workload/b", "spiffe://sigil.test/workload/a"}
	opaque.Aud = []string{"https://api.sigil.test", "spiffe://sigil.test/db"}
	opaque.IssuedAt, opaque.ExpiresAt = t0.Add(time.Minute), t0.Add(30*time.Minute)
	txn := testToken("txn", "root")
	txn.Kind, txn.Act, txn.Aud = TokenTxn, []string{"spiffe://sigil.test/workload/c"}, nil
	// Stored unrevoked and in UTC at microsecond precision whatever is asked.
	zoned := testToken("zoned", "")
	zoned.IssuedAt = time.Date(2026, 3, 1, 13, 0, 0, 123456789, time.FixedZone("CET", 3600))
	zoned.ExpiresAt = zoned.IssuedAt.Add(time.Hour)
	at := t0
	zoned.RevokedAt, zoned.RevocationReason = &at, "ignored"
	insertTokens(t, st, root, txn, opaque, zoned)
	zoned.IssuedAt, zoned.ExpiresAt = t0, t0.Add(time.Hour)
	zoned.RevokedAt, zoned.RevocationReason = nil, ""

	for _, want := range []Token{root, opaque, txn, zoned} {
		if got, err := st.Token(ctx, want.JTI); err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("Token(%q) = %+v, %v\nwant %+v", want.JTI, got, err, want)
		}
	}
	if got, err := st.TokenByHandle(ctx, handleHash("opaque")); err != nil || !reflect.DeepEqual(got, opaque) {
		t.Errorf("TokenByHandle = %+v, %v; want %+v", got, err, opaque)
	}
	if got, err := st.TokenChildren(ctx, "root"); err != nil || !reflect.DeepEqual(got, []Token{txn, opaque}) {
		t.Errorf("TokenChildren(root) = %+v, %v; want txn, opaque", got, err)
	}
	if got, err := st.TokenChildren(ctx, "opaque"); err != nil || got == nil || len(got) != 0 {
		t.Errorf("TokenChildren(leaf) = %#v, %v; want an empty list", got, err)
	}
	if _, err := st.Token(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Token(unknown) = %v, want ErrNotFound", err)
	}
	for _, h := range [][]byte{handleHash("nope"), nil} {
		if _, err := st.TokenByHandle(ctx, h); !errors.Is(err, ErrNotFound) {
			t.Errorf("TokenByHandle(%x) = %v, want ErrNotFound", h, err)
		}
	}
}

func TestInsertTokenRefuses(t *testing.T) {
	mod := func(jti, parent string, f func(*Token)) Token {
		tok := testToken(jti, parent)
		f(&tok)
		return tok
	}
	for _, tc := range []struct {
		name string
		tok  Token
		want error  // or
		text string // in the error
	}{
		{"duplicate jti", testToken("live", ""), ErrConflict, ""},
		{"duplicate handle", mod("new", "", func(t *Token) { t.Kind, t.HandleHash = TokenOpaque, handleHash("opaque") }), ErrConflict, ""},
		{"unknown parent", testToken("new", "nope"), ErrNotFound, `parent "nope"`},
		{"revoked parent", testToken("new", "revoked"), ErrRevoked, ""},
		{"child of a revoked token's child", testToken("new", "revoked-child"), ErrRevoked, ""},
		{"outlives parent", mod("new", "live", func(t *Token) { t.ExpiresAt = t0.Add(time.Hour + time.Microsecond) }), ErrConflict, "after its parent"},
		{"no jti", testToken("", ""), nil, "no jti"},
		{"its own parent", testToken("new", "new"), nil, "exchanged from itself"},
		{"unknown kind", mod("new", "", func(t *Token) { t.Kind = "refresh" }), nil, `kind "refresh"`},
		{"no kind", mod("new", "", func(t *Token) { t.Kind = "" }), nil, `kind ""`},
		{"opaque without handle", mod("new", "", func(t *Token) { t.Kind = TokenOpaque }), nil, "an opaque token has one"},
		{"jwt with handle", mod("new", "", func(t *Token) { t.HandleHash = handleHash("new") }), nil, "a JWT none"},
		{"short handle hash", mod("new", "", func(t *Token) { t.Kind, t.HandleHash = TokenOpaque, make([]byte, 31) }), nil, "31 bytes, want 32"},
		{"expires when issued", mod("new", "", func(t *Token) { t.ExpiresAt = t.IssuedAt }), nil, "expires before it is issued"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, _ := openStore(t)
			ctx := context.Background()
			insertTokens(t, st, testToken("live", ""), opaqueToken("opaque", ""),
				testToken("revoked", ""), testToken("revoked-child", "revoked"))
			if _, err := st.RevokeToken(ctx, "revoked", "compromised", t0); err != nil {
				t.Fatal(err)
			}
			err := st.InsertToken(ctx, tc.tok)
			switch {
			case err == nil:
				t.Fatal("InsertToken succeeded")
			case tc.want != nil && !errors.Is(err, tc.want):
				t.Fatalf("InsertToken = %v, want %v", err, tc.want)
			case !strings.Contains(err.Error(), tc.text):
				t.Fatalf("InsertToken = %v, want it to say %q", err, tc.text)
			}
			if tc.tok.JTI == "new" {
				if _, err := st.Token(ctx, "new"); !errors.Is(err, ErrNotFound) {
					t.Fatalf("refused token stored: %v", err)
				}
			}
		})
	}
}

// TestInsertTokenNarrowLifetime: a child may expire with its parent, not
// after it.
func TestInsertTokenNarrowLifetime(t *testing.T) {
	st, _ := openStore(t)
	child := testToken("child", "parent")
	child.IssuedAt = t0.Add(59 * time.Minute)
	insertTokens(t, st, testToken("parent", ""), child)
	if _, err := st.Token(context.Background(), "child"); err != nil {
		t.Fatal(err)
	}
}

// TestInsertTokensConcurrently: 64 goroutines, each storing tokens with
// their audit entries, group-committed; all are stored.
func TestInsertTokensConcurrently(t *testing.T) {
	st, _ := openStore(t)
	ctx := context.Background()
	insertTokens(t, st, testToken("root", ""))
	const goroutines, perG = 64, 8
	var wg sync.WaitGroup
	start := make(chan struct{})
	for g := range goroutines {
		wg.Go(func() {
			<-start
			for i := range perG {
				jti := fmt.Sprintf("t-%02d-%d", g, i)
				tok := testToken(jti, "root")
				if i%2 == 1 {
					tok = opaqueToken(jti, "root")
				}
				if err := insertAudited(ctx, st, tok); err != nil {
					t.Error(err)
				}
			}
		})
	}
	close(start)
	wg.Wait()
	children, err := st.TokenChildren(ctx, "root")
	if err != nil || len(children) != goroutines*perG {
		t.Fatalf("TokenChildren = %d, %v; want %d", len(children), err, goroutines*perG)
	}
	for _, c := range children {
		if _, err := st.AuditIndex(ctx, "jti:"+c.JTI); err != nil {
			t.Fatalf("token %s not audited: %v", c.JTI, err)
		}
		if c.Kind == TokenOpaque {
			if got, err := st.TokenByHandle(ctx, handleHash(c.JTI)); err != nil || got.JTI != c.JTI {
				t.Fatalf("TokenByHandle(%s) = %s, %v", c.JTI, got.JTI, err)
			}
		}
	}
	if n, err := st.AuditSize(ctx); err != nil || n != goroutines*perG {
		t.Fatalf("AuditSize = %d, %v; want %d", n, err, goroutines*perG)
	}
}

// insertAudited stores tok and its audit entry in one Tx, as the token
// service does before returning a token.
func insertAudited(ctx context.Context, st Store, tok Token) error {
	return st.Tx(ctx, func(tx Tx) error {
		if err := tx.InsertToken(ctx, tok); err != nil {
			return err
		}
		_, err := tx.AppendAudit(ctx, testEntry(tok.JTI, "jti:"+tok.JTI))
		return err
	})
}

func TestPurgeExpiredTokens(t *testing.T) {
	st, _ := openStore(t)
	ctx := context.Background()
	short := func(jti, parent string, d time.Duration) Token {
		tok := testToken(jti, parent)
		tok.ExpiresAt = t0.Add(d)
		return tok
	}
	// A→B→C expire within the hour, E→F later.
	insertTokens(t, st, short("A", "", time.Hour), short("B", "A", 30*time.Minute),
		short("C", "B", 10*time.Minute), short("E", "", 2*time.Hour), short("F", "E", 2*time.Hour))
	for _, jti := range []string{"B", "F"} { // events 1 (B), 2 (C), 3 (F)
		if _, err := st.RevokeToken(ctx, jti, "compromised", t0); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := st.PurgeExpiredTokens(ctx, t0.Add(time.Hour)); err != nil || n != 2 {
		t.Fatalf("PurgeExpiredTokens(A's expiry) = %d, %v; want 2 (B, C; A expires at, not before)", n, err)
	}
	if n, err := st.PurgeExpiredTokens(ctx, t0.Add(90*time.Minute)); err != nil || n != 1 {
		t.Fatalf("PurgeExpiredTokens = %d, %v; want 1 (A)", n, err)
	}
	for _, jti := range []string{"A", "B", "C"} {
		if _, err := st.Token(ctx, jti); !errors.Is(err, ErrNotFound) {
			t.Errorf("Token(%s) after purge = %v, want ErrNotFound", jti, err)
		}
	}
	if _, events := revocationState(t, st, "E", "F"); len(events) != 1 || events[0].Seq != 3 || events[0].JTI != "F" {
		t.Fatalf("events after purge = %+v, want F's alone, seq 3", events)
	}
	if seq, err := st.LatestRevocationSeq(ctx); err != nil || seq != 3 {
		t.Fatalf("LatestRevocationSeq after purge = %d, %v; want 3", seq, err)
	}
	// Numbering goes on; purged jtis are gone for good.
	if got, err := st.RevokeToken(ctx, "E", "logout", t0); err != nil || !reflect.DeepEqual(got, []string{"E"}) {
		t.Fatalf("RevokeToken(E) = %q, %v", got, err)
	}
	if es, err := st.RevocationEvents(ctx, 3, 10); err != nil || len(es) != 1 || es[0].Seq != 4 || es[0].JTI != "E" {
		t.Fatalf("RevocationEvents(3) = %+v, %v; want E at seq 4", es, err)
	}
	if _, err := st.RevokeToken(ctx, "A", "logout", t0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("RevokeToken(purged) = %v, want ErrNotFound", err)
	}
	if n, err := st.PurgeExpiredTokens(ctx, t0.Add(90*time.Minute)); err != nil || n != 0 {
		t.Fatalf("PurgeExpiredTokens again = %d, %v; want 0", n, err)
	}
}

// TestTokensImmutable: the schema itself refuses to change what a token
// record says, but for its revocation, and to rewrite revocation events.
func TestTokensImmutable(t *testing.T) {
	st, path := openStore(t)
	tokenTree(t, st)
	if _, err := st.RevokeToken(context.Background(), "B", "compromised", t0); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, tc := range []struct{ name, sql, want string }{
		{"expiry", `UPDATE tokens SET expires_at = expires_at + 1 WHERE jti = 'C'`, "immutable"},
		{"parent", `UPDATE tokens SET parent_jti = 'E' WHERE jti = 'C'`, "immutable"},
		{"jti", `UPDATE tokens SET jti = 'Z' WHERE jti = 'E'`, "immutable"},
		{"event", `UPDATE token_revocations SET reason = 'other'`, "append-only"},
		{"sequence reset", `UPDATE token_revocation_seq SET seq = -1`, "CHECK constraint failed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := db.Exec(tc.sql); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("%s: %v, want an error saying %q", tc.sql, err, tc.want)
			}
		})
	}
}
