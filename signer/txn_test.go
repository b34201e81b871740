package signer_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/hsm"
	"github.com/sigil-dev/sigil/signer"
	"github.com/sigil-dev/sigil/token"
)

const trustDomainID = "spiffe://sigil.test"

// txnRequest is B asking for a transaction token, scope read, on the
// strength of the access token A's exchange gave it.
func txnRequest() signer.Request {
	return signer.Request{Caller: callerB, Subject: subjectClaims(), Audience: []string{trustDomainID}, Scope: "read",
		TxnContext: map[string]any{"action": "buy"}, RequestContext: map[string]any{"req_ip": "192.0.2.1"}}
}

// replacement is C asking for a replacement of the transaction token t.
func replacement(t *token.Claims) signer.Request {
	return signer.Request{Caller: callerC, Subject: t, Audience: []string{trustDomainID}}
}

// A transaction token carries every claim the draft requires, with the
// values it must have; every refusal is the broken rule's kind.
func TestTransaction(t *testing.T) {
	tests := []struct {
		name  string
		req   func(r *signer.Request)
		code  error
		check func(t *testing.T, c *token.Claims)
	}{
		{"claims", nil, nil, func(t *testing.T, c *token.Claims) {
			switch {
			case c.Type != token.TxnToken:
				t.Errorf("typ %q", c.Type)
			case !slices.Equal(c.Audience, []string{trustDomainID}):
				t.Errorf("aud %v, want the trust domain", c.Audience)
			case c.Subject != "user@example.com" || c.RequestingWorkload != callerB.ID:
				t.Errorf("sub %q, req_wl %q", c.Subject, c.RequestingWorkload)
			case !slices.Equal(c.Scope, []string{"read"}):
				t.Errorf("scope %v", c.Scope)
			case c.IssuedAt != t0 || c.Expiry != t0.Add(signer.MaxTxnLifetime):
				t.Errorf("iat %v exp %v, want %v and %v later", c.IssuedAt, c.Expiry, t0, signer.MaxTxnLifetime)
			case c.TxnContext["action"] != "buy" || c.RequestContext["req_ip"] != "192.0.2.1":
				t.Errorf("tctx %v rctx %v", c.TxnContext, c.RequestContext)
			case c.Confirmation != callerB.Thumbprint || !slices.Equal(c.Actor.Chain(), []string{callerB.ID, callerA.ID}):
				t.Errorf("cnf %q act %v", c.Confirmation, c.Actor.Chain())
			}
		}},
		{"shorter-subject", func(r *signer.Request) { r.Subject.Expiry = t0.Add(time.Minute) }, nil, func(t *testing.T, c *token.Claims) {
			if c.Expiry != t0.Add(time.Minute) {
				t.Errorf("exp %v outlives the subject token", c.Expiry)
			}
		}},
		{"wider-scope", func(r *signer.Request) { r.Scope = "read delete" }, badScope, nil},
		{"no-scope-at-all", func(r *signer.Request) { r.Scope, r.Subject.Scope = "", nil }, badScope, nil},
		{"audience-a-workload", func(r *signer.Request) { r.Audience = []string{callerC.ID} }, badTarget, nil},
		{"audience-another-trust-domain", func(r *signer.Request) { r.Audience = []string{"spiffe://other.test"} }, badTarget, nil},
		{"audience-and-workload", func(r *signer.Request) { r.Audience = append(r.Audience, callerC.ID) }, badTarget, nil},
		{"no-audience", func(r *signer.Request) { r.Audience = nil }, badTarget, nil},
		{"resource", func(r *signer.Request) { r.Resource = []string{"https://api.example"} }, badTarget, nil},
		{"no-subject", func(r *signer.Request) { r.Subject = nil }, badRequest, nil},
		{"subject-for-another", func(r *signer.Request) { r.Subject.Audience = []string{callerC.ID} }, badGrant, nil},
		{"subject-expired", func(r *signer.Request) { r.Subject.Expiry = t0 }, badGrant, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := txnRequest()
			if tt.req != nil {
				tt.req(&req)
			}
			c, err := rules().Transaction(t0, req, trustDomainID)
			if got := kindOf(t, err); got != tt.code {
				t.Fatalf("got %v (%v), want %v", got, err, tt.code)
			}
			if tt.check != nil {
				tt.check(t, c)
			}
		})
	}
}

// A replacement, further down the call chain, keeps the transaction: its
// txn, sub, tctx and rctx; its scope only narrows; it may not bring a
// context of its own.
func TestTransactionReplacement(t *testing.T) {
	first, err := rules().Transaction(t0, txnRequest(), trustDomainID)
	if err != nil {
		t.Fatal(err)
	}
	first.Txn, first.Scope = "txn-1", []string{"read", "write"}
	next, err := rules().Transaction(t0, replacement(first), trustDomainID)
	if err != nil {
		t.Fatal(err)
	}
	if next.Txn != "txn-1" || next.Subject != first.Subject || next.RequestingWorkload != callerC.ID ||
		next.TxnContext["action"] != "buy" || next.RequestContext["req_ip"] != "192.0.2.1" || !slices.Equal(next.Scope, first.Scope) {
		t.Errorf("replacement %+v does not keep the transaction of %+v", next, first)
	}
	wider := replacement(first)
	wider.Scope = "admin"
	if _, err := rules().Transaction(t0, wider, trustDomainID); kindOf(t, err) != badScope {
		t.Errorf("a wider replacement: %v", err)
	}
	ctx := replacement(first)
	ctx.TxnContext = map[string]any{"action": "sell"}
	if _, err := rules().Transaction(t0, ctx, trustDomainID); kindOf(t, err) != badRequest {
		t.Errorf("a replacement changing tctx: %v", err)
	}
}

// The Minter signs a transaction token only with req_wl and a scope, and
// for minutes.
func TestMintTxnRefuses(t *testing.T) {
	e := newEnv(t, hsm.ES256)
	now := e.clock.Now()
	good := token.Claims{Subject: callerA.ID, Audience: []string{trustDomainID}, Scope: []string{"read"}, RequestingWorkload: callerA.ID,
		IssuedAt: now, Expiry: now.Add(time.Minute)}
	if _, err := e.mint.TxnToken(t.Context(), good); err != nil {
		t.Fatalf("TxnToken: %v", err)
	}
	for name, edit := range map[string]func(c *token.Claims){
		"no-req_wl": func(c *token.Claims) { c.RequestingWorkload = "" },
		"no-scope":  func(c *token.Claims) { c.Scope = nil },
		"too-long":  func(c *token.Claims) { c.Expiry = now.Add(signer.MaxTxnLifetime + time.Second) },
	} {
		c := good
		edit(&c)
		if _, err := e.mint.TxnToken(t.Context(), c); err == nil || !strings.Contains(err.Error(), "transaction token") {
			t.Errorf("%s: %v", name, err)
		}
	}
}
