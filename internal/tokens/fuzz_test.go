package tokens_test

import (
	"errors"
	"net/url"
	"testing"

	"github.com/sigil-dev/sigil/internal/tokens"
	"github.com/sigil-dev/sigil/internal/tokens/tokenstest"
	"github.com/sigil-dev/sigil/signer"
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
	f.Add(exchange(ab.AccessToken, a.ID, "actor_token", ab.AccessToken, "actor_token_type", signer.TokenTypeTxnToken).Encode())
	f.Add("grant_type=" + url.QueryEscape(tokens.GrantTokenExchange) + "&subject_token=AAAA&subject_token_type=" + url.QueryEscape(signer.TokenTypeAccessToken))
	f.Add("grant_type=client_credentials&audience=&audience=%00&scope=%22")
	f.Fuzz(func(t *testing.T, body string) {
		form, err := url.ParseQuery(body)
		if err != nil {
			return
		}
		_, err = e.Service.Token(t.Context(), b.Cert, form)
		var oe *signer.Error
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
	ref := mustToken(f, e.Service, a, cc(b.ID, "requested_token_type", signer.TokenTypeAccessToken)).AccessToken
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
