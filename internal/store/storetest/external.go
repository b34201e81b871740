package storetest

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/internal/store"
)

// An external token's record is stored once, by its first insert; tokens
// exchanged from it are its children, revoked with it; once revoked it
// stays revoked and refuses children.
func testExternalToken(t *testing.T, h *harness) {
	st := h.fresh(t)
	ctx := context.Background()
	ext := ExternalToken("ext:alice")
	ext.Act = []string{"https://idp.test/agent"}
	other := ExternalToken("ext:alice")
	other.Sub, other.ExpiresAt = "mallory@idp.test", T0.Add(2*time.Hour)
	for _, tok := range []store.Token{ext, other} {
		if err := st.InsertExternalToken(ctx, tok); err != nil {
			t.Fatalf("InsertExternalToken(%s): %v", tok.Sub, err)
		}
	}
	if got, err := st.Token(ctx, ext.JTI); err != nil || !reflect.DeepEqual(got, ext) {
		t.Fatalf("Token = %+v, %v\nwant the first insert's %+v", got, err, ext)
	}
	InsertTokens(t, st, Token("A", ext.JTI), Token("B", "A"), Token("C", ""))
	revoked, err := st.RevokeToken(ctx, ext.JTI, "revoked by its audience", T0)
	if want := []string{ext.JTI, "A", "B"}; err != nil || !slices.Equal(revoked, want) {
		t.Fatalf("RevokeToken = %v, %v; want %v", revoked, err, want)
	}
	if err := st.InsertExternalToken(ctx, ext); err != nil {
		t.Fatalf("InsertExternalToken of a revoked one: %v", err)
	}
	if got, err := st.Token(ctx, ext.JTI); err != nil || got.RevokedAt == nil {
		t.Fatalf("after inserting it again: %+v, %v; want still revoked", got, err)
	}
	if err := st.InsertToken(ctx, Token("D", ext.JTI)); !errors.Is(err, store.ErrRevoked) {
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
func testExternalTokenRefused(t *testing.T, h *harness) {
	ext := func(f func(*store.Token)) store.Token {
		tok := ExternalToken("ext:alice")
		f(&tok)
		return tok
	}
	ours := Token("ext:ours", "")
	for _, tc := range []struct {
		name     string
		tok      store.Token
		external bool // InsertExternalToken, else InsertToken
		text     string
	}{
		{"ours in the external namespace", ours, false, `jti "ext:ours"`},
		{"ours as external", Token("plain", ""), true, "want external"},
		{"ours in the namespace as external", ours, true, `jti "ext:ours"`},
		{"external outside the namespace", ext(func(t *store.Token) { t.JTI = "alice" }), true, `jti "alice"`},
		{"external outside the namespace as ours", ext(func(t *store.Token) { t.JTI = "alice" }), false, `jti "alice"`},
		{"external with a parent", ext(func(t *store.Token) { t.ParentJTI = "live" }), true, "with a parent"},
		{"external with a client", ext(func(t *store.Token) { t.ClientID = "spiffe://sigil.test/workload/a" }), true, "client"},
		{"external with a cnf", ext(func(t *store.Token) { t.CNF = "x5t" }), true, "cnf"},
		{"external with a kid", ext(func(t *store.Token) { t.KID = "token-1" }), true, "kid"},
		{"external expiring when issued", ext(func(t *store.Token) { t.ExpiresAt = t.IssuedAt }), true, "expires before it is issued"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := h.fresh(t)
			ctx := context.Background()
			InsertTokens(t, st, Token("live", ""))
			insert := st.InsertToken
			if tc.external {
				insert = st.InsertExternalToken
			}
			err := insert(ctx, tc.tok)
			if err == nil || !strings.Contains(err.Error(), tc.text) {
				t.Fatalf("insert = %v, want it to say %q", err, tc.text)
			}
			if _, err := st.Token(ctx, tc.tok.JTI); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("refused token stored: %v", err)
			}
		})
	}
}
