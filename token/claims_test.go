package token_test

import (
	"encoding/json"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/token"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// TestClaimsRoundTrip: what MarshalJSON writes, UnmarshalJSON reads back
// unchanged, with the member names RFC 9068, RFC 8693, RFC 8705 and sigil
// use.
func TestClaimsRoundTrip(t *testing.T) {
	c := token.Claims{
		Type: token.TxnToken, Issuer: "https://sigil.test", Subject: "alice", Audience: []string{"a"},
		IssuedAt: t0, NotBefore: t0, Expiry: t0.Add(time.Minute), ID: "j", ClientID: "spiffe://sigil.test/workload/b",
		Scope: []string{"read", "write"}, Confirmation: "cnf", Actor: token.NewActor([]string{"b", "a"}),
		SubjectIssuer: "https://idp.test", Evidence: "ev", Policy: "v7",
		Txn: "t", TxnContext: map[string]any{"k": "v"}, RequestContext: map[string]any{"ip": "192.0.2.1"},
	}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"iss", "sub", "aud", "exp", "nbf", "iat", "jti", "client_id", "scope", "cnf", "act", "sub_id", "sigil_sub_iss", "sigil_evidence", "sigil_policy", "txn", "tctx", "rctx"} {
		if _, ok := m[name]; !ok {
			t.Errorf("claim %q missing from %s", name, b)
		}
	}
	if _, ok := m["Type"]; ok || m["scope"] != "read write" || m["exp"] != float64(t0.Add(time.Minute).Unix()) {
		t.Errorf("claims JSON %s", b)
	}
	if cnf, _ := m["cnf"].(map[string]any); cnf["x5t#S256"] != "cnf" {
		t.Errorf("cnf = %v", m["cnf"])
	}
	got := token.Claims{Type: token.TxnToken}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, c) {
		t.Fatalf("round trip\n got %+v\nwant %+v", got, c)
	}
}

func TestClaimsOmitAbsent(t *testing.T) {
	b, err := json.Marshal(token.Claims{Subject: "s"})
	if err != nil || string(b) != `{"sub":"s"}` {
		t.Fatalf("Marshal = %s, %v", b, err)
	}
	var c token.Claims
	if err := json.Unmarshal(b, &c); err != nil || !c.Expiry.IsZero() || c.Actor != nil || c.Confirmation != "" {
		t.Fatalf("Unmarshal = %+v, %v", c, err)
	}
}

func TestAudience(t *testing.T) {
	tests := []struct {
		name, json string
		want       []string
		err        bool
	}{
		{"string", `"a"`, []string{"a"}, false},
		{"array", `["a","b"]`, []string{"a", "b"}, false},
		{"empty array", `[]`, []string{}, false},
		{"number", `7`, nil, true},
		{"array of numbers", `[1]`, nil, true},
		{"object", `{"a":1}`, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var a token.Audience
			err := json.Unmarshal([]byte(tt.json), &a)
			if (err != nil) != tt.err || (!tt.err && !reflect.DeepEqual([]string(a), tt.want)) {
				t.Fatalf("Unmarshal(%s) = %q, %v", tt.json, a, err)
			}
		})
	}
	if b, _ := json.Marshal(token.Audience{"a"}); string(b) != `["a"]` {
		t.Fatalf("one audience written as %s, want an array", b)
	}
}

func TestNumericDate(t *testing.T) {
	tests := []struct {
		json string
		want time.Time
		err  bool
	}{
		{"1772366400", t0, false},
		{"1772366400.9", t0, false}, // fractions dropped
		{"1.7723664e9", t0, false},
		{"0", time.Unix(0, 0).UTC(), false},
		{"-1", time.Time{}, true},
		{"137438953472", time.Time{}, true}, // 2^37: past year 5138
		{`"1772366400"`, time.Time{}, true},
		{"true", time.Time{}, true},
	}
	for _, tt := range tests {
		var d token.NumericDate
		err := json.Unmarshal([]byte(tt.json), &d)
		if (err != nil) != tt.err || (!tt.err && !d.Time().Equal(tt.want)) {
			t.Errorf("Unmarshal(%s) = %v, %v; want %v (error %v)", tt.json, d.Time(), err, tt.want, tt.err)
		}
	}
	if d := token.NewNumericDate(time.Time{}); d != nil || !d.Time().IsZero() {
		t.Errorf("zero time gives %v", d)
	}
}

func TestActor(t *testing.T) {
	a := token.NewActor([]string{"c", "b", "a"})
	want := &token.Actor{Subject: "c", Actor: &token.Actor{Subject: "b", Actor: &token.Actor{Subject: "a"}}}
	switch {
	case !reflect.DeepEqual(a, want):
		t.Fatalf("NewActor = %+v", a)
	case a.Depth() != 3 || !reflect.DeepEqual(a.Chain(), []string{"c", "b", "a"}) || !a.Valid():
		t.Fatalf("depth %d chain %v valid %v", a.Depth(), a.Chain(), a.Valid())
	case token.NewActor(nil) != nil:
		t.Fatal("NewActor(nil) is not nil")
	}
	var none *token.Actor
	if none.Depth() != 0 || none.Chain() != nil || !none.Valid() {
		t.Fatal("nil actor")
	}
	if (&token.Actor{Subject: "b", Actor: &token.Actor{}}).Valid() {
		t.Fatal("a level without sub is valid")
	}
}

// TestClaimsTestdata reads the seeds of FuzzClaims: the good ones decode,
// the one named after its defect does not.
func TestClaimsTestdata(t *testing.T) {
	for name, ok := range map[string]bool{"claims-access.json": true, "claims-txn.json": true, "claims-exp-string.json": false} {
		b, err := os.ReadFile("testdata/" + name)
		if err != nil {
			t.Fatal(err)
		}
		var c token.Claims
		err = json.Unmarshal(b, &c)
		if (err == nil) != ok {
			t.Errorf("%s: %v", name, err)
		}
		if strings.HasSuffix(name, "txn.json") && (c.Txn != "t-1" || len(c.Audience) != 1 || c.Expiry.Unix() != 1772370000) {
			t.Errorf("%s: %+v", name, c)
		}
	}
}

func TestHasAudienceAndScope(t *testing.T) {
	c := token.Claims{Audience: []string{"a", "b"}, Scope: []string{"read"}}
	if !c.HasAudience("b") || c.HasAudience("c") || !c.HasScope("read") || c.HasScope("write") {
		t.Fatal("HasAudience or HasScope")
	}
}

func TestThumbprint(t *testing.T) {
	// SHA-256 of "abc", base64url without padding.
	if got, want := token.Thumbprint([]byte("abc")), "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0"; got != want {
		t.Fatalf("Thumbprint = %q, want %q", got, want)
	}
}

// TestClaimsMarshalJSONIsCompact: signer mints with Claims.MarshalJSON
// directly, skipping the pass in which json.Marshal checks and compacts a
// marshaler's output; the bytes must be those json.Marshal writes, HTML
// characters, line separators and nested marshalers (aud, act, tctx)
// included, so that tokens do not change.
func TestClaimsMarshalJSONIsCompact(t *testing.T) {
	odd := "a<b>&c\u2028d\u2029e\"f\\g\x01"
	for _, c := range []token.Claims{
		{},
		{Subject: "s", Audience: []string{"one"}},
		{
			Issuer: "https://sigil.test", Subject: odd, Audience: []string{odd, "b"}, ID: "j", ClientID: odd,
			IssuedAt: t0, NotBefore: t0, Expiry: t0.Add(time.Minute), Scope: []string{"r", odd},
			Confirmation: odd, Actor: token.NewActor([]string{odd, "a"}), SubjectIssuer: odd, Evidence: odd, Policy: odd,
			Txn: odd, RequestingWorkload: odd, TxnContext: map[string]any{odd: []any{odd, 1.5, nil, true}}, RequestContext: map[string]any{"ip": odd},
		},
	} {
		want, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		got, err := c.MarshalJSON()
		if err != nil || string(got) != string(want) {
			t.Errorf("MarshalJSON = %s, %v\njson.Marshal = %s", got, err, want)
		}
	}
}
