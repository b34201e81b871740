package tokens_test

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/sigil-dev/sigil/internal/tokens"
)

// TestResponseJSONMatchesEncodingJSON: AppendJSON writes json.Marshal's
// bytes, scope or none, for plain values and values encoding/json
// escapes.
func TestResponseJSONMatchesEncodingJSON(t *testing.T) {
	for _, r := range []tokens.Response{
		{AccessToken: "eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJ4In0.c2ln", IssuedTokenType: "urn:ietf:params:oauth:token-type:access_token", TokenType: "Bearer", ExpiresIn: 300, Scope: "orders:read orders:write", JTI: "j"},
		{AccessToken: "opaque", IssuedTokenType: "urn:ietf:params:oauth:token-type:txn_token", TokenType: "N_A", ExpiresIn: 0},
		{AccessToken: "", TokenType: "", ExpiresIn: -1, Scope: "<a>&b \u2028 \"q\" \\ \xff"},
	} {
		checkResponseJSON(t, r)
	}
}

func checkResponseJSON(t *testing.T, r tokens.Response) {
	t.Helper()
	want, err := json.Marshal(&r)
	if err != nil {
		t.Fatal(err)
	}
	if got := r.AppendJSON([]byte("prefix")); !bytes.Equal(got, append([]byte("prefix"), want...)) {
		t.Fatalf("AppendJSON = %s, want prefix%s", got, want)
	}
}

// FuzzResponseJSON: for any strings and lifetime, AppendJSON writes
// json.Marshal's bytes.
func FuzzResponseJSON(f *testing.F) {
	f.Add("eyJ.eyJ.sig", "urn:ietf:params:oauth:token-type:jwt", "Bearer", int64(300), "a b")
	f.Add("", "", "", int64(-1), "")
	f.Add("<>&", "\u2028", "\xff\xfe", int64(1<<62), "\"\\")
	f.Fuzz(func(t *testing.T, tok, issued, typ string, exp int64, scope string) {
		checkResponseJSON(t, tokens.Response{AccessToken: tok, IssuedTokenType: issued, TokenType: typ, ExpiresIn: exp, Scope: scope})
	})
}
