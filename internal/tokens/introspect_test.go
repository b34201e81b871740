package tokens_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/internal/tokens/tokenstest"
	"github.com/sigil-dev/sigil/token"
)

// Introspection answers a party in the token's audience or an admin, with
// cnf and act; anyone else, and any token that is not a live one of ours,
// gets active:false.
func TestIntrospection(t *testing.T) {
	t.Parallel()
	e := tokenstest.New(t)
	a, b, c := e.Workload(t, "a"), e.Workload(t, "b"), e.Workload(t, "c")
	admin := e.Client(t, tokenstest.Admin)
	ab := mustToken(t, e.Service, a, cc(b.ID, "scope", "read write"))
	bc := mustToken(t, e.Service, b, exchange(ab.AccessToken, c.ID, "scope", "read"))
	unrecorded, err := e.Minter.AccessToken(t.Context(), token.Claims{
		Subject: a.ID, Audience: []string{c.ID}, Expiry: time.Now().Add(time.Minute), Confirmation: token.Thumbprint(a.Cert.Raw),
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		caller *tokenstest.Workload
		token  string
		active bool
	}{
		{"audience", c, bc.AccessToken, true},
		{"admin", admin, bc.AccessToken, true},
		{"holder outside the audience", b, bc.AccessToken, false},
		{"subject outside the audience", a, bc.AccessToken, false},
		{"garbage", c, "garbage", false},
		{"empty", c, "", false},
		{"oversized", c, strings.Repeat("a.", 5000) + "a", false},
		{"user IdP token", c, e.IdP.Token(t, "alice", c.ID, "read"), false},
		{"signed by our key but never issued", c, unrecorded.Token, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in, err := e.Service.Introspect(t.Context(), tt.caller.Cert, tt.token)
			if err != nil {
				t.Fatal(err)
			}
			if in.Active != tt.active {
				t.Fatalf("active = %v, want %v", in.Active, tt.active)
			}
			if got, _ := json.Marshal(in); !in.Active && string(got) != `{"active":false}` {
				t.Errorf("inactive answer tells more: %s", got)
			}
		})
	}

	in, err := e.Service.Introspect(t.Context(), c.Cert, bc.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	switch {
	case in.Sub != a.ID || in.ClientID != b.ID || in.Scope != "read" || in.Iss != tokenstest.Issuer || in.JTI != bc.JTI:
		t.Errorf("introspection = %+v", in)
	case in.Cnf == nil || in.Cnf.X5tS256 != token.Thumbprint(b.Cert.Raw):
		t.Errorf("cnf = %+v, want b's certificate thumbprint", in.Cnf)
	case in.Act == nil || in.Act.Subject != b.ID || in.Act.Actor != nil:
		t.Errorf("act = %+v, want b", in.Act)
	case in.TokenType != "Bearer" || in.Kind != store.TokenJWT || in.Evidence != e.EvidenceDigest() || in.Exp <= time.Now().Unix():
		t.Errorf("introspection = %+v", in)
	}

	if err := e.Service.Revoke(t.Context(), a.Cert, ab.AccessToken); err != nil {
		t.Fatal(err)
	}
	for _, tok := range []string{ab.AccessToken, bc.AccessToken} {
		if in, err := e.Service.Introspect(t.Context(), admin.Cert, tok); err != nil || in.Active {
			t.Errorf("after revoking the root: %+v, %v; want active:false", in, err)
		}
	}
}
