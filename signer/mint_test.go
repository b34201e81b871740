package signer_test

import (
	"encoding/base64"
	"encoding/json"
	"maps"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/hsm"
	"github.com/sigil-dev/sigil/signer"
	"github.com/sigil-dev/sigil/token"
)

// TestAccessTokenFormat checks the exact header and claims of an RFC 9068
// access token for each key algorithm, and that it verifies.
func TestAccessTokenFormat(t *testing.T) {
	for _, alg := range []hsm.Alg{hsm.ES256, hsm.ES384, hsm.PS256} {
		t.Run(string(alg), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, alg)
			tok, signed := e.accessToken(t, token.Claims{
				Subject: "user@example.com", SubjectIssuer: idpIssuer, Audience: []string{callerC.ID}, ClientID: callerB.ID, Scope: []string{"read", "write"},
				Confirmation: callerB.Thumbprint, Actor: chain(callerB.ID, callerA.ID), Evidence: callerB.Evidence, Policy: callerB.Policy,
			}, 10*time.Minute)
			key := e.hsmKey(t)
			if h, want := decodeSegment(t, tok, 0), map[string]any{"alg": string(alg), "kid": key.KID(), "typ": "at+jwt"}; !reflect.DeepEqual(h, want) {
				t.Fatalf("header %v, want %v", h, want)
			}
			c := decodeSegment(t, tok, 1)
			wantKeys := []string{"act", "aud", "client_id", "cnf", "exp", "iat", "iss", "jti", "nbf", "scope", "sigil_evidence", "sigil_policy", "sigil_sub_iss", "sub", "sub_id"}
			if got := slices.Sorted(maps.Keys(c)); !reflect.DeepEqual(got, wantKeys) {
				t.Fatalf("claims %v, want %v", got, wantKeys)
			}
			checkClaimValues(t, c, signed)
			if _, err := e.verify.Verify(t.Context(), tok, callerC.ID); err != nil {
				t.Fatalf("Verify: %v", err)
			}
		})
	}
}

func checkClaimValues(t *testing.T, c map[string]any, signed *token.Claims) {
	t.Helper()
	jti, err := base64.RawURLEncoding.DecodeString(c["jti"].(string))
	switch {
	case err != nil || len(jti) != 18:
		t.Fatalf("jti %v is not 18 bytes (NewID's) base64url", c["jti"])
	case !reflect.DeepEqual(c["aud"], []any{callerC.ID}):
		t.Fatalf("aud %v is not an array", c["aud"])
	case c["scope"] != "read write" || c["iss"] != issuer || c["client_id"] != callerB.ID:
		t.Fatalf("scope %v iss %v client_id %v", c["scope"], c["iss"], c["client_id"])
	case !reflect.DeepEqual(c["cnf"], map[string]any{"x5t#S256": callerB.Thumbprint}):
		t.Fatalf("cnf %v", c["cnf"])
	case c["exp"].(float64) != float64(t0.Add(10*time.Minute).Unix()) || c["iat"].(float64) != float64(t0.Unix()):
		t.Fatalf("exp %v iat %v", c["exp"], c["iat"])
	case c["jti"] != signed.ID || c["sigil_evidence"] != callerB.Evidence:
		t.Fatal("returned claims differ from the token's")
	case !reflect.DeepEqual(c["sub_id"], map[string]any{"format": "iss_sub", "iss": idpIssuer, "sub": "user@example.com"}):
		t.Fatalf("sub_id %v", c["sub_id"])
	}
}

// TestActNesting checks the exact JSON of a three-level act claim
// (RFC 8693 §4.1).
func TestActNesting(t *testing.T) {
	e := newEnv(t, hsm.ES256)
	tok, _ := e.accessToken(t, token.Claims{Subject: "user", SubjectIssuer: idpIssuer, Audience: []string{"x"}, Actor: chain(callerC.ID, callerB.ID, callerA.ID)}, time.Minute)
	b, _ := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[1])
	var c map[string]json.RawMessage
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	want := `{"sub":"` + callerC.ID + `","act":{"sub":"` + callerB.ID + `","act":{"sub":"` + callerA.ID + `"}}}`
	if string(c["act"]) != want {
		t.Fatalf("act = %s\nwant  %s", c["act"], want)
	}
}

func TestMintRefuses(t *testing.T) {
	e := newEnv(t, hsm.ES256, signer.WithRetain(time.Hour))
	valid := func() token.Claims {
		return token.Claims{Subject: callerA.ID, Audience: []string{"a"}, Expiry: t0.Add(time.Hour)}
	}
	tests := []struct {
		name string
		mod  func(c *token.Claims)
	}{
		{"no subject", func(c *token.Claims) { c.Subject = "" }},
		{"no audience", func(c *token.Claims) { c.Audience = nil }},
		{"no expiry", func(c *token.Claims) { c.Expiry = time.Time{} }},
		{"expired", func(c *token.Claims) { c.Expiry = t0 }},
		{"lifetime over Retain", func(c *token.Claims) { c.Expiry = t0.Add(time.Hour + time.Second) }},
		{"act level without subject", func(c *token.Claims) { c.Actor = &token.Actor{Actor: &token.Actor{Subject: "x"}} }},
		{"user without its issuer", func(c *token.Claims) { c.Subject = "alice" }},
		{"SPIFFE ID as an IdP's user", func(c *token.Claims) { c.SubjectIssuer = idpIssuer }},
		{"lookalike user", func(c *token.Claims) { c.Subject, c.SubjectIssuer = " "+callerB.ID, idpIssuer }},
		{"act naming a user", func(c *token.Claims) { c.Actor = &token.Actor{Subject: "bob"} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := valid()
			tt.mod(&c)
			if m, err := e.mint.AccessToken(t.Context(), c); err == nil || m != nil {
				t.Fatalf("minted %+v, %v", m, err)
			}
		})
	}
	if _, err := e.mint.AccessToken(t.Context(), valid()); err != nil {
		t.Fatalf("control: %v", err)
	}
}

// TestMintConcurrent mints from 64 goroutines: all succeed, all verify,
// all jtis differ.
func TestMintConcurrent(t *testing.T) {
	e := newEnv(t, hsm.ES256)
	const n = 64
	toks, jtis := make([]string, n), make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			c := token.Claims{Subject: callerA.ID, Audience: []string{callerB.ID}, Expiry: t0.Add(time.Minute)}
			m, err := e.mint.AccessToken(t.Context(), c)
			if err != nil {
				t.Errorf("AccessToken: %v", err)
				return
			}
			toks[i], jtis[i] = m.Token, m.Claims.ID
		})
	}
	wg.Wait()
	if slices.Sort(jtis); len(slices.Compact(jtis)) != n {
		t.Fatal("duplicate jti")
	}
	for _, tok := range toks {
		if _, err := e.verify.Verify(t.Context(), tok, callerB.ID); err != nil {
			t.Fatalf("Verify: %v", err)
		}
	}
}

func TestReferenceTokens(t *testing.T) {
	h1, d1 := signer.NewReference()
	h2, _ := signer.NewReference()
	raw, err := base64.RawURLEncoding.DecodeString(h1)
	switch {
	case err != nil || len(raw) != 32 || len(h1) != 43:
		t.Fatalf("handle %q is not 256 bits base64url", h1)
	case h1 == h2:
		t.Fatal("handles repeat")
	case d1 == h1 || strings.Contains(d1, h1):
		t.Fatal("digest reveals the handle")
	case d1 != token.Thumbprint([]byte(h1)):
		t.Fatal("digest is not base64url(SHA-256(handle))")
	}
	if d, err := signer.ReferenceDigest(h1); err != nil || d != d1 {
		t.Fatalf("ReferenceDigest = %q, %v; want %q", d, err, d1)
	}
	for name, bad := range map[string]string{
		"empty": "", "short": h1[:42], "long": h1 + "A", "a JWT": "a.b.c", "padding": h1[:42] + "=",
		"newline": h1[:20] + "\n" + h1[21:],
	} {
		if _, err := signer.ReferenceDigest(bad); err == nil {
			t.Errorf("%s handle accepted", name)
		}
	}
}

func TestMintRefusesOversizedTokens(t *testing.T) {
	e := newEnv(t, hsm.ES256)
	c := token.Claims{Subject: callerA.ID, Audience: []string{"a"}, Expiry: t0.Add(time.Minute),
		RequestContext: map[string]any{"pad": strings.Repeat("x", signer.MaxTokenSize)}}
	if m, err := e.mint.TxnToken(t.Context(), c); err == nil {
		t.Fatalf("minted a token of %d bytes, which the verifier refuses", len(m.Token))
	}
}
