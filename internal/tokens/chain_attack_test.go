package tokens_test

import (
	"encoding/base64"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/api"
	"github.com/sigil-dev/sigil/internal/tokens"
	"github.com/sigil-dev/sigil/internal/tokens/tokenstest"
)

// userClaims are the claims of an IdP token for alice, issued to aud, with
// edit applied; a nil value in edit deletes the claim.
func userClaims(aud string, edit map[string]any) map[string]any {
	now := time.Now()
	c := map[string]any{
		"iss": tokenstest.IdPIssuer, "sub": "alice", "aud": []string{aud}, "scope": "orders:read payments:charge",
		"iat": now.Unix(), "exp": now.Add(10 * time.Minute).Unix(), "jti": "idp-attack",
	}
	for k, v := range edit {
		c[k] = v
	}
	return c
}

// rawUserToken is an IdP token for alice issued to aud whose claims JSON
// ends with extra, written as is (members no encoder would write).
func rawUserToken(t *testing.T, idp *tokenstest.IdP, aud, extra string) string {
	t.Helper()
	c := userClaims(aud, nil)
	delete(c, "sub")
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return idp.SignJSON(t, append(b[:len(b)-1], ","+extra+"}"...))
}

// TestExternalTokenAttacks exchanges IdP tokens crafted to smuggle an
// identity into the new token: a workload into the delegation chain
// (act), a SPIFFE ID or its lookalike into sub, a wider scope into scope.
// The IdP signed each of them, so only sigil's own checks stand between
// them and a resource server. Each is refused with invalid_request (RFC
// 8693 §2.2.2) and issues nothing; the controls show what an IdP may send.
func TestExternalTokenAttacks(t *testing.T) {
	t.Parallel()
	e := tokenstest.New(t)
	frontend, orders, payments := e.Workload(t, "frontend"), e.Workload(t, "orders"), e.Workload(t, "payments")
	signed := func(edit map[string]any) string { return e.IdP.Sign(t, userClaims(frontend.ID, edit)) }
	sub := func(s string) string { return signed(map[string]any{"sub": s}) }
	raw := func(extra string) string { return rawUserToken(t, e.IdP, frontend.ID, extra) }
	pay := payments.ID // spiffe://sigil.test/workload/payments
	tests := []struct {
		name  string
		token string
		ok    bool // a control: exchanged, with only what sigil saw
	}{
		{name: "control: plain user", token: sub("alice"), ok: true},
		{name: "control: email with plus and inner space allowed", token: sub("Alice Smith+tag@example.com"), ok: true},
		{name: "control: auth0-style pipe", token: sub("auth0|5f7c8ec7c33c6c004bbafe82"), ok: true},
		{name: "control: client_id naming a workload is not read", token: signed(map[string]any{"client_id": pay}), ok: true},

		// act: only sigil's own exchanges put a workload in a chain.
		{name: "act names a workload", token: signed(map[string]any{"act": map[string]any{"sub": pay}})},
		{name: "act names a user", token: signed(map[string]any{"act": map[string]any{"sub": "bob"}})},
		{name: "act nests a workload under a user", token: signed(map[string]any{"act": map[string]any{"sub": "bob", "act": map[string]any{"sub": pay}}})},
		{name: "act with an issuer", token: signed(map[string]any{"act": map[string]any{"sub": pay, "iss": "https://sigil.test"}})},
		{name: "act member in upper case", token: signed(map[string]any{"ACT": map[string]any{"sub": pay}})},
		{name: "act member in title case", token: signed(map[string]any{"Act": map[string]any{"sub": pay}})},
		{name: "act is null", token: raw(`"sub":"alice","act":null`)},
		{name: "act is empty", token: signed(map[string]any{"act": map[string]any{}})},

		// sub: never a SPIFFE ID, in any reading a resource server makes.
		{name: "SPIFFE ID", token: sub(pay)},
		{name: "leading space", token: sub(" " + pay)},
		{name: "trailing space", token: sub("alice ")},
		{name: "leading tab", token: sub("\t" + pay)},
		{name: "leading newline", token: sub("\n" + pay)},
		{name: "NUL prefix", token: sub("\x00" + pay)},
		{name: "DEL inside", token: sub("ali\x7fce")},
		{name: "C1 next line prefix", token: sub("\u0085" + pay)},
		{name: "upper-case scheme", token: sub(strings.Replace(pay, "spiffe", "SPIFFE", 1))},
		{name: "title-case scheme", token: sub(strings.Replace(pay, "spiffe", "Spiffe", 1))},
		{name: "scheme without slashes", token: sub("spiffe:sigil.test/workload/payments")},
		{name: "space before the colon", token: sub("spiffe ://sigil.test/workload/payments")},
		{name: "scheme after a prefix", token: sub("user:" + pay)},
		{name: "percent-encoded colon", token: sub("spiffe%3A%2F%2Fsigil.test%2Fworkload%2Fpayments")},
		{name: "percent-encoded letter", token: sub("%73piffe://sigil.test/workload/payments")},
		{name: "double percent-encoding", token: sub("%2573piffe://sigil.test/workload/payments")},
		{name: "HTML entity", token: sub("&#115;piffe://sigil.test/workload/payments")},
		{name: "backslash escape", token: sub(`\u0073piffe://sigil.test/workload/payments`)},
		{name: "JSON escape in the claims", token: raw(`"sub":"\u0073piffe://sigil.test/workload/payments"`)},
		{name: "fullwidth letters", token: sub("ｓｐｉｆｆｅ://sigil.test/workload/payments")},
		{name: "fullwidth colon", token: sub("spiffe：//sigil.test/workload/payments")},
		{name: "Cyrillic dze for s", token: sub("ѕpiffe://sigil.test/workload/payments")},
		{name: "long s folds to s", token: sub("ſpiffe://sigil.test/workload/payments")},
		{name: "zero-width space prefix", token: sub("\u200b" + pay)},
		{name: "soft hyphen inside the scheme", token: sub("spi\u00adffe://sigil.test/workload/payments")},
		{name: "right-to-left override", token: sub("\u202eatnemyap/daolkrow/tset.ligis//:effips")},
		{name: "non-breaking space prefix", token: sub("\u00a0" + pay)},
		{name: "invalid UTF-8", token: sub("alice\xff")},
		{name: "empty", token: sub("")},
		{name: "only spaces", token: sub("   ")},
		{name: "longer than 255 bytes", token: sub(strings.Repeat("a", 256))},
		{name: "sub twice, user first", token: raw(`"sub":"alice","sub":"` + pay + `"`)},
		{name: "sub twice, SPIFFE ID first", token: raw(`"sub":"` + pay + `","sub":"alice"`)},
		{name: "sub not a string", token: raw(`"sub":["alice"]`)},

		// scope: what the resource server splits is what policy was asked.
		{name: "scope array element with a space", token: signed(map[string]any{"scope": []string{"orders:read payments:charge"}})},
		{name: "scope separated by a tab", token: signed(map[string]any{"scope": "orders:read\tpayments:charge"})},
		{name: "scope separated by a non-breaking space", token: signed(map[string]any{"scope": "orders:read\u00a0payments:charge"})},
		{name: "scope with a control character", token: signed(map[string]any{"scope": "orders:read\x00"})},
		{name: "scope with a quote", token: signed(map[string]any{"scope": `orders:"read"`})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := e.Service.Token(t.Context(), frontend.Cert, exchange(tt.token, orders.ID))
			if !tt.ok {
				if err == nil {
					c := verify(t, e, r.AccessToken, orders.ID)
					t.Fatalf("exchanged: sub %q, act %v, scope %v", c.Subject, c.Actor.Chain(), c.Scope)
				}
				if oe := oauthErr(t, err); oe.Code != tokens.InvalidRequest || !strings.HasPrefix(oe.Description, "subject_token is invalid: ") {
					t.Fatalf("got %v, want invalid_request: subject_token is invalid", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("control refused: %v", err)
			}
			c := verify(t, e, r.AccessToken, orders.ID)
			switch {
			case !slices.Equal(c.Actor.Chain(), []string{frontend.ID}):
				t.Errorf("act chain %v, want only the frontend, which sigil saw", c.Actor.Chain())
			case c.ClientID != frontend.ID:
				t.Errorf("client_id %q, want the frontend", c.ClientID)
			case !c.IsUser() || c.IsWorkload() || c.SubjectIssuer != tokenstest.IdPIssuer:
				t.Errorf("sub %q from %q: not told apart as the IdP's user", c.Subject, c.SubjectIssuer)
			}
			want := `{"format":"iss_sub","iss":"` + tokenstest.IdPIssuer + `","sub":` + quote(c.Subject) + `}`
			if got := claimJSON(t, r.AccessToken, "sub_id"); got != want {
				t.Errorf("sub_id %s, want %s", got, want)
			}
		})
	}
}

// claimJSON is the JSON of the claim name in the JWT tok.
func claimJSON(t *testing.T, tok, name string) string {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return string(m[name])
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// An actor_token must be one of ours: an IdP token for the token
// service, even naming the caller, is refused before any rule.
func TestExternalActorTokenRefused(t *testing.T) {
	t.Parallel()
	e := tokenstest.New(t)
	a, b := e.Workload(t, "a"), e.Workload(t, "b")
	sub := mustToken(t, e.Service, a, cc(b.ID)).AccessToken
	act := e.IdP.Sign(t, userClaims(tokenstest.Issuer, map[string]any{"sub": "alice"}))
	_, err := e.Service.Token(t.Context(), b.Cert, exchange(sub, a.ID, "actor_token", act, "actor_token_type", api.TokenTypeAccessToken))
	if oe := oauthErr(t, err); oe.Code != tokens.InvalidRequest || oe.Description != "actor_token is invalid: not a token this server issued" {
		t.Fatalf("got %v, want invalid_request: actor_token is invalid: not a token this server issued", err)
	}
}
