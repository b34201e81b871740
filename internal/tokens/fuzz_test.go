package tokens_test

import (
	"errors"
	"net/url"
	"testing"

	"github.com/sigil-dev/sigil/api"
	"github.com/sigil-dev/sigil/internal/tokens"
	"github.com/sigil-dev/sigil/internal/tokens/tokenstest"
)

// FuzzTokenRequest sends arbitrary form bodies to the token endpoint's
// logic: every answer is a token or an OAuth error, never a panic or a
// server error.
func FuzzTokenRequest(f *testing.F) {
	e := tokenstest.New(f)
	a, b := e.Workload(f, "a"), e.Workload(f, "b")
	ab := mustToken(f, e.Service, a, cc(b.ID, "scope", "read"))
	f.Add(cc(b.ID).Encode())
	f.Add(exchange(ab.AccessToken, a.ID, "scope", "read", "resource", "https://rs.example/x").Encode())
	f.Add(exchange(ab.AccessToken, a.ID, "actor_token", ab.AccessToken, "actor_token_type", api.TokenTypeTxnToken).Encode())
	f.Add("grant_type=" + url.QueryEscape(tokens.GrantTokenExchange) + "&subject_token=AAAA&subject_token_type=" + url.QueryEscape(api.TokenTypeAccessToken))
	f.Add("grant_type=client_credentials&audience=&audience=%00&scope=%22")
	f.Add(txnRequest(ab.AccessToken, api.TokenTypeJWT, "request_context", b64(`{"req_ip":"192.0.2.1"}`), "request_details", b64(`{"a":[1,{"b":null}]}`)).Encode())
	f.Fuzz(func(t *testing.T, body string) {
		form, err := url.ParseQuery(body)
		if err != nil {
			return
		}
		_, err = e.Service.Token(t.Context(), b.Cert, form)
		var oe *tokens.Error
		if err != nil && !errors.As(err, &oe) {
			t.Fatalf("Token(%q): not an OAuth error: %v", body, err)
		}
	})
}

// FuzzIntrospect presents arbitrary tokens: only a token the service
// issued is ever active.
func FuzzIntrospect(f *testing.F) {
	e := tokenstest.New(f)
	a, b := e.Workload(f, "a"), e.Workload(f, "b")
	jwt := mustToken(f, e.Service, a, cc(b.ID, "scope", "read")).AccessToken
	ref := mustToken(f, e.Service, a, cc(b.ID, "requested_token_type", api.TokenTypeAccessToken)).AccessToken
	issued := map[string]bool{jwt: true, ref: true}
	for _, s := range []string{jwt, ref, jwt[:len(jwt)-2], ref[1:] + "A", "a.b.c", "", e.IdP.Token(f, "alice", b.ID, "read")} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, token string) {
		in, err := e.Service.Introspect(t.Context(), b.Cert, token)
		if err != nil {
			t.Fatalf("Introspect: %v", err)
		}
		if in.Active && !issued[token] {
			t.Fatalf("Introspect(%q) active for a token never issued", token)
		}
	})
}

// FuzzRevoke presents arbitrary tokens for revocation by a workload in
// no token's audience: every answer is a success with nothing done or
// unauthorized_client, and neither a token of ours nor a user token's
// chain is ever revoked.
func FuzzRevoke(f *testing.F) {
	e := tokenstest.New(f)
	a, b, stranger := e.Workload(f, "a"), e.Workload(f, "b"), e.Workload(f, "stranger")
	ours := mustToken(f, e.Service, a, cc(b.ID, "scope", "read"))
	user := e.IdP.Token(f, "alice", a.ID, "read")
	chain := mustToken(f, e.Service, a, exchange(user, b.ID))
	for _, s := range []string{ours.AccessToken, user, user[:len(user)-2], "a.b.c", "", chain.AccessToken} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, token string) {
		err := e.Service.Revoke(t.Context(), stranger.Cert, token)
		var oe *tokens.Error
		if err != nil && (!errors.As(err, &oe) || oe.Code != tokens.UnauthorizedClient) {
			t.Fatalf("Revoke(%q): %v, want success or unauthorized_client", token, err)
		}
		for _, jti := range []string{ours.JTI, chain.JTI} {
			if rec, err := e.Store.Token(t.Context(), jti); err != nil || rec.RevokedAt != nil {
				t.Fatalf("Revoke(%q) by a stranger revoked %s (%v)", token, jti, err)
			}
		}
	})
}
