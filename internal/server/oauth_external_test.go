package server

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/internal/tokens"
	"github.com/sigil-dev/sigil/internal/tokens/tokenstest"
)

// Over HTTP: a user's IdP token starts a chain; a party outside its
// audience may not revoke it; the frontend, in its audience, does, and
// the chain is revoked with it (feed, introspection, audit) and the user
// token refused from then on.
func TestOAuthRevokeUserToken(t *testing.T) {
	t.Parallel()
	o := newOAuthServer(t)
	frontend, orders, payments := o.Workload(t, "frontend"), o.Workload(t, "orders"), o.Workload(t, "payments")
	feed := o.subscribe(t, o.client(o.Workload(t, "rs")), "")
	user := o.IdP.Token(t, "alice", frontend.ID, "orders:read")
	fo := o.token(t, o.client(frontend), exchangeForm(user, orders.ID)).str("access_token")
	op := o.token(t, o.client(orders), exchangeForm(fo, payments.ID)).str("access_token")
	revoke := url.Values{"token": {user}, "token_type_hint": {"access_token"}}

	for _, w := range []string{"stranger", "orders"} {
		r := o.post(t, o.client(o.Workload(t, w)), tokens.PathRevoke, revoke)
		if r.status != http.StatusBadRequest || r.str("error") != tokens.UnauthorizedClient {
			t.Errorf("revocation by %s: %d %s, want 400 unauthorized_client", w, r.status, r.raw)
		}
	}
	in := o.post(t, o.client(payments), tokens.PathIntrospect, url.Values{"token": {op}})
	if in.body["active"] != true {
		t.Fatalf("chain inactive after refused revocations: %s", in.raw)
	}

	if r := o.post(t, o.client(frontend), tokens.PathRevoke, revoke); r.status != http.StatusOK {
		t.Fatalf("revocation by the frontend: %d %s", r.status, r.raw)
	}
	var revoked []string
	for range 3 {
		revoked = append(revoked, o.setJTI(t, feed.next(t).data))
	}
	chain := []string{jtiOf(t, fo), jtiOf(t, op)}
	ext := slices.IndexFunc(revoked, func(j string) bool { return strings.HasPrefix(j, store.ExternalPrefix) })
	if ext < 0 || !slices.Contains(revoked, chain[0]) || !slices.Contains(revoked, chain[1]) {
		t.Fatalf("feed published %v, want the user token's record and %v", revoked, chain)
	}
	for _, jti := range append(chain, revoked[ext]) {
		if _, err := o.Store.AuditIndex(t.Context(), "revoked:"+jti); err != nil {
			t.Errorf("revocation of %s not audited: %v", jti, err)
		}
	}
	for _, c := range []struct {
		tok string
		aud *tokenstest.Workload
	}{{fo, orders}, {op, payments}} {
		if in := o.post(t, o.client(c.aud), tokens.PathIntrospect, url.Values{"token": {c.tok}}); in.raw != `{"active":false}`+"\n" {
			t.Errorf("introspection by %s after revoking the user token: %s", c.aud.ID, in.raw)
		}
	}
	r := o.post(t, o.client(frontend), tokens.PathToken, exchangeForm(user, orders.ID))
	if r.status != http.StatusBadRequest || r.str("error") != tokens.InvalidRequest || !strings.Contains(r.str("error_description"), "revoked") {
		t.Errorf("exchange of the revoked user token: %d %s, want 400 invalid_request", r.status, r.raw)
	}
}
