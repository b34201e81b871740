package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/internal/store"
)

// tokenTree stores A→B→C, A→D and an unrelated E.
func tokenTree(t testing.TB, st store.Store) {
	t.Helper()
	InsertTokens(t, st, Token("A", ""), Token("B", "A"), Token("C", "B"),
		Token("D", "A"), Token("E", ""))
}

func testTokenRoundTrip(t *testing.T, h *harness) {
	st := h.fresh(t)
	ctx := context.Background()
	root := Token("root", "")
	opaque := OpaqueToken("opaque", "root")
	opaque.Act = []string{"spiffe://sigil.test/workload/b", "spiffe://sigil.test/workload/a"}
	opaque.Aud = []string{"https://api.sigil.test", "spiffe://sigil.test/db"}
	opaque.IssuedAt, opaque.ExpiresAt = T0.Add(time.Minute), T0.Add(30*time.Minute)
	txn := Token("txn", "root")
	txn.Kind, txn.Act, txn.Aud = store.TokenTxn, []string{"spiffe://sigil.test/workload/c"}, nil
	// Stored unrevoked and in UTC at microsecond precision whatever is asked.
	zoned := Token("zoned", "")
	zoned.IssuedAt = time.Date(2026, 3, 1, 13, 0, 0, 123456789, time.FixedZone("CET", 3600))
	zoned.ExpiresAt = zoned.IssuedAt.Add(time.Hour)
	at := T0
	zoned.RevokedAt, zoned.RevocationReason = &at, "ignored"
	InsertTokens(t, st, root, txn, opaque, zoned)
	zoned.IssuedAt, zoned.ExpiresAt = T0, T0.Add(time.Hour)
	zoned.RevokedAt, zoned.RevocationReason = nil, ""

	for _, want := range []store.Token{root, opaque, txn, zoned} {
		if got, err := st.Token(ctx, want.JTI); err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("Token(%q) = %+v, %v\nwant %+v", want.JTI, got, err, want)
		}
	}
	if got, err := st.TokenByHandle(ctx, HandleHash("opaque")); err != nil || !reflect.DeepEqual(got, opaque) {
		t.Errorf("TokenByHandle = %+v, %v; want %+v", got, err, opaque)
	}
	if got, err := st.TokenChildren(ctx, "root"); err != nil || !reflect.DeepEqual(got, []store.Token{txn, opaque}) {
		t.Errorf("TokenChildren(root) = %+v, %v; want txn, opaque", got, err)
	}
	if got, err := st.TokenChildren(ctx, "opaque"); err != nil || got == nil || len(got) != 0 {
		t.Errorf("TokenChildren(leaf) = %#v, %v; want an empty list", got, err)
	}
	if _, err := st.Token(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Token(unknown) = %v, want ErrNotFound", err)
	}
	for _, h := range [][]byte{HandleHash("nope"), nil} {
		if _, err := st.TokenByHandle(ctx, h); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("TokenByHandle(%x) = %v, want ErrNotFound", h, err)
		}
	}
}

func testInsertTokenRefuses(t *testing.T, h *harness) {
	mod := func(jti, parent string, f func(*store.Token)) store.Token {
		tok := Token(jti, parent)
		f(&tok)
		return tok
	}
	for _, tc := range []struct {
		name string
		tok  store.Token
		want error  // or
		text string // in the error
	}{
		{"duplicate jti", Token("live", ""), store.ErrConflict, ""},
		{"duplicate handle", mod("new", "", func(t *store.Token) { t.Kind, t.HandleHash = store.TokenOpaque, HandleHash("opaque") }), store.ErrConflict, ""},
		{"unknown parent", Token("new", "nope"), store.ErrNotFound, `parent "nope"`},
		{"revoked parent", Token("new", "revoked"), store.ErrRevoked, ""},
		{"child of a revoked token's child", Token("new", "revoked-child"), store.ErrRevoked, ""},
		{"outlives parent", mod("new", "live", func(t *store.Token) { t.ExpiresAt = T0.Add(time.Hour + time.Microsecond) }), store.ErrConflict, "after its parent"},
		{"no jti", Token("", ""), nil, "no jti"},
		{"its own parent", Token("new", "new"), nil, "exchanged from itself"},
		{"unknown kind", mod("new", "", func(t *store.Token) { t.Kind = "refresh" }), nil, `kind "refresh"`},
		{"no kind", mod("new", "", func(t *store.Token) { t.Kind = "" }), nil, `kind ""`},
		{"opaque without handle", mod("new", "", func(t *store.Token) { t.Kind = store.TokenOpaque }), nil, "an opaque token has one"},
		{"jwt with handle", mod("new", "", func(t *store.Token) { t.HandleHash = HandleHash("new") }), nil, "a JWT none"},
		{"short handle hash", mod("new", "", func(t *store.Token) { t.Kind, t.HandleHash = store.TokenOpaque, make([]byte, 31) }), nil, "31 bytes, want 32"},
		{"expires when issued", mod("new", "", func(t *store.Token) { t.ExpiresAt = t.IssuedAt }), nil, "expires before it is issued"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := h.fresh(t)
			ctx := context.Background()
			InsertTokens(t, st, Token("live", ""), OpaqueToken("opaque", ""),
				Token("revoked", ""), Token("revoked-child", "revoked"))
			if _, err := st.RevokeToken(ctx, "revoked", "compromised", T0); err != nil {
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
				if _, err := st.Token(ctx, "new"); !errors.Is(err, store.ErrNotFound) {
					t.Fatalf("refused token stored: %v", err)
				}
			}
		})
	}
}

// testInsertTokenNarrowLifetime: a child may expire with its parent, not
// after it.
func testInsertTokenNarrowLifetime(t *testing.T, h *harness) {
	st := h.fresh(t)
	child := Token("child", "parent")
	child.IssuedAt = T0.Add(59 * time.Minute)
	InsertTokens(t, st, Token("parent", ""), child)
	if _, err := st.Token(context.Background(), "child"); err != nil {
		t.Fatal(err)
	}
}

// testInsertTokensConcurrently: 64 goroutines, each storing tokens with
// their audit entries, group-committed; all are stored.
func testInsertTokensConcurrently(t *testing.T, h *harness) {
	st := h.fresh(t)
	ctx := context.Background()
	InsertTokens(t, st, Token("root", ""))
	const goroutines, perG = 64, 8
	var wg sync.WaitGroup
	start := make(chan struct{})
	for g := range goroutines {
		wg.Go(func() {
			<-start
			for i := range perG {
				jti := fmt.Sprintf("t-%02d-%d", g, i)
				tok := Token(jti, "root")
				if i%2 == 1 {
					tok = OpaqueToken(jti, "root")
				}
				if err := InsertAudited(ctx, st, tok); err != nil {
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
		if c.Kind == store.TokenOpaque {
			if got, err := st.TokenByHandle(ctx, HandleHash(c.JTI)); err != nil || got.JTI != c.JTI {
				t.Fatalf("TokenByHandle(%s) = %s, %v", c.JTI, got.JTI, err)
			}
		}
	}
	if n, err := st.AuditSize(ctx); err != nil || n != goroutines*perG {
		t.Fatalf("AuditSize = %d, %v; want %d", n, err, goroutines*perG)
	}
}

func testPurgeExpiredTokens(t *testing.T, h *harness) {
	st := h.fresh(t)
	ctx := context.Background()
	short := func(jti, parent string, d time.Duration) store.Token {
		tok := Token(jti, parent)
		tok.ExpiresAt = T0.Add(d)
		return tok
	}
	// A→B→C expire within the hour, E→F later.
	InsertTokens(t, st, short("A", "", time.Hour), short("B", "A", 30*time.Minute),
		short("C", "B", 10*time.Minute), short("E", "", 2*time.Hour), short("F", "E", 2*time.Hour))
	for _, jti := range []string{"B", "F"} { // events 1 (B), 2 (C), 3 (F)
		if _, err := st.RevokeToken(ctx, jti, "compromised", T0); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := st.PurgeExpiredTokens(ctx, T0.Add(time.Hour)); err != nil || n != 2 {
		t.Fatalf("PurgeExpiredTokens(A's expiry) = %d, %v; want 2 (B, C; A expires at, not before)", n, err)
	}
	if n, err := st.PurgeExpiredTokens(ctx, T0.Add(90*time.Minute)); err != nil || n != 1 {
		t.Fatalf("PurgeExpiredTokens = %d, %v; want 1 (A)", n, err)
	}
	for _, jti := range []string{"A", "B", "C"} {
		if _, err := st.Token(ctx, jti); !errors.Is(err, store.ErrNotFound) {
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
	if got, err := st.RevokeToken(ctx, "E", "logout", T0); err != nil || !reflect.DeepEqual(got, []string{"E"}) {
		t.Fatalf("RevokeToken(E) = %q, %v", got, err)
	}
	if es, err := st.RevocationEvents(ctx, 3, 10); err != nil || len(es) != 1 || es[0].Seq != 4 || es[0].JTI != "E" {
		t.Fatalf("RevocationEvents(3) = %+v, %v; want E at seq 4", es, err)
	}
	if _, err := st.RevokeToken(ctx, "A", "logout", T0); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("RevokeToken(purged) = %v, want ErrNotFound", err)
	}
	if n, err := st.PurgeExpiredTokens(ctx, T0.Add(90*time.Minute)); err != nil || n != 0 {
		t.Fatalf("PurgeExpiredTokens again = %d, %v; want 0", n, err)
	}
}
