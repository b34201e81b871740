package token

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// reflectClaims is the claims set as encoding/json writes wireClaims: what
// MarshalJSON wrote before appendClaims, and must still write.
func reflectClaims(c *Claims) ([]byte, error) {
	w := wireClaims{
		Iss: c.Issuer, Sub: c.Subject, Aud: c.Audience, Jti: c.ID, ClientID: c.ClientID,
		Scope: strings.Join(c.Scope, " "), Act: c.Actor, SubIss: c.SubjectIssuer,
		Evidence: c.Evidence, Policy: c.Policy, Txn: c.Txn, ReqWL: c.RequestingWorkload, Tctx: c.TxnContext, Rctx: c.RequestContext,
		Exp: NewNumericDate(c.Expiry), Nbf: NewNumericDate(c.NotBefore), Iat: NewNumericDate(c.IssuedAt),
	}
	if c.Confirmation != "" {
		w.Cnf = &Confirmation{X5tS256: c.Confirmation}
	}
	w.SubID = c.subjectID()
	return json.Marshal(w)
}

// claimSetters set one claim each, to a value that needs escaping where a
// string can; index i of a combination is setter i.
var claimSetters = []func(c *Claims){
	func(c *Claims) { c.Issuer = "https://sigil.example/<iss>&" },
	func(c *Claims) { c.Subject = "spiffe://example.org/ns/a/sa/b" },
	func(c *Claims) { c.Subject, c.SubjectIssuer = "alice\u2028\"é\xff", "https://idp.example" },
	func(c *Claims) { c.Audience = []string{"spiffe://example.org/orders"} },
	func(c *Claims) { c.Audience = []string{"a", "b\\c", ""} },
	func(c *Claims) { c.Expiry = time.Unix(1_900_000_000, 0) },
	func(c *Claims) { c.NotBefore = time.Unix(5, 0) },
	func(c *Claims) { c.IssuedAt = time.Unix(1_700_000_000, 999) },
	func(c *Claims) { c.ID = "jti-\x00\x1f" },
	func(c *Claims) { c.ClientID = "spiffe://example.org/frontend" },
	func(c *Claims) { c.Scope = []string{"orders:read", "orders:<write>"} },
	func(c *Claims) { c.Scope = []string{""} },
	func(c *Claims) { c.Confirmation = "x5t-thumb" },
	func(c *Claims) { c.Actor = NewActor([]string{"spiffe://example.org/a", "spiffe://example.org/b"}) },
	func(c *Claims) { c.Actor = &Actor{Subject: "", Issuer: "https://idp", Actor: &Actor{Subject: "x"}} },
	func(c *Claims) { c.SubjectIssuer = "https://idp.example" },
	func(c *Claims) { c.Evidence = "sha256:abc" },
	func(c *Claims) { c.Policy = "v7" },
	func(c *Claims) { c.Txn = "txn-1" },
	func(c *Claims) { c.RequestingWorkload = "spiffe://example.org/edge" },
	func(c *Claims) { c.TxnContext = map[string]any{"z": 1.5, "a": []any{"<x>", true, nil}} },
	func(c *Claims) { c.RequestContext = map[string]any{"ip": "10.0.0.1", "n": map[string]any{"k": "v"}} },
}

// TestClaimsJSONMatchesEncodingJSON: the appender writes the bytes
// encoding/json writes for wireClaims, with every claim alone, every pair
// of claims, all but one and all together (the commas between members
// depend on which came before), and they decode back to claims that encode
// alike.
func TestClaimsJSONMatchesEncodingJSON(t *testing.T) {
	n := len(claimSetters)
	var sets [][]int
	all := make([]int, n)
	for i := range n {
		all[i] = i
		sets = append(sets, []int{i})
		for j := i + 1; j < n; j++ {
			sets = append(sets, []int{i, j})
		}
		but := make([]int, 0, n-1)
		for j := range n {
			if j != i {
				but = append(but, j)
			}
		}
		sets = append(sets, but)
	}
	sets = append(sets, nil, all)
	for _, set := range sets {
		var c Claims
		for _, i := range set {
			claimSetters[i](&c)
		}
		checkClaimsJSON(t, &c)
	}
}

// checkClaimsJSON compares c's MarshalJSON with encoding/json's and reads
// it back.
func checkClaimsJSON(t *testing.T, c *Claims) {
	t.Helper()
	want, werr := reflectClaims(c)
	got, gerr := c.MarshalJSON()
	if (werr != nil) != (gerr != nil) || !bytes.Equal(got, want) {
		t.Fatalf("claims %+v:\nappender      %s (%v)\nencoding/json %s (%v)", c, got, gerr, want, werr)
	}
	if gerr != nil {
		return
	}
	var back Claims
	if err := json.Unmarshal(got, &back); err != nil {
		t.Fatalf("decode %s: %v", got, err)
	}
	// Decoding replaces invalid UTF-8 with U+FFFD, so the second encoding
	// is compared with encoding/json's of the decoded claims.
	again, err := back.MarshalJSON()
	if want, _ := reflectClaims(&back); err != nil || !bytes.Equal(again, want) {
		t.Fatalf("decoded and encoded again: %s (%v), want %s", again, err, want)
	}
}

// FuzzClaimsJSON: for any strings in any claim, the appender writes
// encoding/json's bytes.
func FuzzClaimsJSON(f *testing.F) {
	f.Add(uint32(0xffffffff), "spiffe://example.org/a", "https://idp", "<&>\u2028", "a b", int64(1_700_000_000))
	f.Add(uint32(0), "", "", "", "", int64(0))
	f.Add(uint32(0x5555), "alice", "\xff\xfe", "\"\\", "x", int64(-1))
	f.Fuzz(func(t *testing.T, mask uint32, s1, s2, s3, s4 string, secs int64) {
		if secs < -maxDate || secs > maxDate {
			return
		}
		at := time.Unix(secs, 0)
		fields := []func(c *Claims){
			func(c *Claims) { c.Issuer = s1 },
			func(c *Claims) { c.Subject = s2 },
			func(c *Claims) { c.SubjectIssuer = s3 },
			func(c *Claims) { c.Audience = []string{s3, s4} },
			func(c *Claims) { c.Expiry = at },
			func(c *Claims) { c.NotBefore = at },
			func(c *Claims) { c.IssuedAt = at },
			func(c *Claims) { c.ID = s4 },
			func(c *Claims) { c.ClientID = s1 },
			func(c *Claims) { c.Scope = strings.Fields(s4) },
			func(c *Claims) { c.Confirmation = s2 },
			func(c *Claims) { c.Actor = &Actor{Subject: s1, Issuer: s3, Actor: &Actor{Subject: s4}} },
			func(c *Claims) { c.Evidence, c.Policy = s3, s4 },
			func(c *Claims) { c.Txn, c.RequestingWorkload = s1, s2 },
			func(c *Claims) { c.TxnContext = map[string]any{s1: s2} },
			func(c *Claims) { c.RequestContext = map[string]any{s3: []any{s4}} },
		}
		var c Claims
		for i, set := range fields {
			if mask&(1<<i) != 0 {
				set(&c)
			}
		}
		want, werr := reflectClaims(&c)
		got, gerr := c.MarshalJSON()
		if (werr != nil) != (gerr != nil) || !bytes.Equal(got, want) {
			t.Fatalf("appender %s (%v), encoding/json %s (%v)", got, gerr, want, werr)
		}
	})
}
