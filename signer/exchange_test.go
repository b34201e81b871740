package signer_test

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/signer"
	"github.com/sigil-dev/sigil/token"
)

// Kinds of broken rule.
var (
	badRequest = signer.ErrRequest
	badGrant   = signer.ErrGrant
	badTarget  = signer.ErrTarget
	badScope   = signer.ErrScope
	noClient   = signer.ErrClient
)

// rules are the limits of the tests: tokens of at most an hour, three
// actors. Policy is not signer's: internal/tokens asks it afterwards.
func rules() signer.Rules {
	return signer.Rules{MaxLifetime: time.Hour, MaxActDepth: 3}
}

// subjectClaims are a verified token of user@example.com issued to B by
// A's exchange, valid for 30 minutes from t0.
func subjectClaims() *token.Claims {
	return &token.Claims{
		Type: token.AccessToken, Issuer: issuer, Subject: "user@example.com", Audience: []string{callerB.ID},
		IssuedAt: t0.Add(-time.Minute), NotBefore: t0.Add(-time.Minute), Expiry: t0.Add(30 * time.Minute),
		ID: "subject-jti", ClientID: callerA.ID, Scope: []string{"read", "write", "admin"},
		Confirmation: callerA.Thumbprint, Actor: &token.Actor{Subject: callerA.ID},
	}
}

// baseRequest is B asking for a token for C, scope read.
func baseRequest() signer.Request {
	return signer.Request{Caller: callerB, Subject: subjectClaims(), Audience: []string{callerC.ID}, Scope: "read"}
}

func chain(subs ...string) *token.Actor {
	var a *token.Actor
	for i := len(subs) - 1; i >= 0; i-- {
		a = &token.Actor{Subject: subs[i], Actor: a}
	}
	return a
}

type exchangeCase struct {
	name  string
	req   func(r *signer.Request)
	code  error
	check func(t *testing.T, c *token.Claims)
}

func TestExchange(t *testing.T) {
	tests := slices.Concat(exchangeGrantCases(), exchangeActorCases(), exchangeTargetCases(), exchangeScopeAndLifetimeCases())
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := baseRequest()
			if tt.req != nil {
				tt.req(&req)
			}
			c, err := rules().Exchange(t0, req)
			if got := kindOf(t, err); got != tt.code {
				t.Fatalf("got %v (%v), want %v", got, err, tt.code)
			}
			if tt.check != nil {
				tt.check(t, c)
			}
		})
	}
}

func exchangeGrantCases() []exchangeCase {
	return []exchangeCase{
		{name: "valid", code: ok, check: func(t *testing.T, c *token.Claims) {
			want := &token.Claims{
				Type: token.AccessToken, Subject: "user@example.com", Audience: []string{callerC.ID},
				IssuedAt: t0, NotBefore: t0, Expiry: t0.Add(30 * time.Minute), ClientID: callerB.ID,
				Scope: []string{"read"}, Confirmation: callerB.Thumbprint,
				Actor:    chain(callerB.ID, callerA.ID),
				Evidence: callerB.Evidence, Policy: callerB.Policy,
			}
			if !reflect.DeepEqual(c, want) {
				t.Fatalf("claims\n got %+v\nwant %+v", c, want)
			}
		}},
		{name: "missing subject token", req: func(r *signer.Request) { r.Subject = nil }, code: badRequest},
		{name: "subject token for another audience", req: func(r *signer.Request) { r.Subject.Audience = []string{callerC.ID} }, code: badGrant},
		{name: "subject token for the caller among others", req: func(r *signer.Request) {
			r.Subject.Audience = []string{callerC.ID, callerB.ID}
		}, code: ok},
		{name: "subject token expired", req: func(r *signer.Request) { r.Subject.Expiry = t0 }, code: badGrant},
		{name: "cnf is the caller's, not the subject token's", code: ok, check: func(t *testing.T, c *token.Claims) {
			if c.Confirmation != callerB.Thumbprint {
				t.Fatalf("cnf = %q, want the caller's %q", c.Confirmation, callerB.Thumbprint)
			}
		}},
		{name: "act chain at the limit", req: func(r *signer.Request) {
			r.Subject.Actor = chain("spiffe://sigil.test/workload/x", "spiffe://sigil.test/workload/y", callerA.ID)
		}, code: badGrant},
		{name: "act chain one below the limit", req: func(r *signer.Request) {
			r.Subject.Actor = chain("spiffe://sigil.test/workload/y", callerA.ID)
		}, code: ok, check: func(t *testing.T, c *token.Claims) {
			if want := chain(callerB.ID, "spiffe://sigil.test/workload/y", callerA.ID); !reflect.DeepEqual(c.Actor, want) {
				t.Fatalf("act depth %d, want %d", c.Actor.Depth(), want.Depth())
			}
		}},
		{name: "subject token without act", req: func(r *signer.Request) { r.Subject.Actor = nil }, code: ok,
			check: func(t *testing.T, c *token.Claims) {
				if !reflect.DeepEqual(c.Actor, chain(callerB.ID)) {
					t.Fatalf("act = %+v", c.Actor)
				}
			}},
	}
}

func exchangeActorCases() []exchangeCase {
	return []exchangeCase{
		{name: "actor token of another workload", req: func(r *signer.Request) {
			r.Actor = &token.Claims{Subject: callerA.ID, Confirmation: callerA.Thumbprint, Expiry: t0.Add(time.Minute)}
		}, code: badGrant},
		{name: "actor token with the caller's sub and another certificate", req: func(r *signer.Request) {
			r.Actor = &token.Claims{Subject: callerB.ID, Confirmation: callerA.Thumbprint, Expiry: t0.Add(time.Minute)}
		}, code: badGrant},
		{name: "actor token without cnf", req: func(r *signer.Request) {
			r.Actor = &token.Claims{Subject: callerB.ID, Expiry: t0.Add(time.Minute)}
		}, code: badGrant},
		{name: "actor token expired", req: func(r *signer.Request) {
			r.Actor = &token.Claims{Subject: callerB.ID, Confirmation: callerB.Thumbprint, Expiry: t0}
		}, code: badGrant},
		{name: "actor token of the caller", req: func(r *signer.Request) {
			r.Actor = &token.Claims{Subject: callerB.ID, Confirmation: callerB.Thumbprint, Expiry: t0.Add(time.Minute)}
		}, code: ok},
		{name: "caller without SPIFFE ID", req: func(r *signer.Request) { r.Caller.ID = "" }, code: noClient},
		{name: "caller without certificate thumbprint", req: func(r *signer.Request) { r.Caller.Thumbprint = "" }, code: noClient},
		{name: "external subject keeps its issuer", req: func(r *signer.Request) { r.Subject.SubjectIssuer = idpIssuer }, code: ok,
			check: func(t *testing.T, c *token.Claims) {
				if c.SubjectIssuer != idpIssuer || c.Subject != "user@example.com" {
					t.Fatalf("sub %q from %q", c.Subject, c.SubjectIssuer)
				}
			}},
		{name: "transaction token subject carries txn", req: func(r *signer.Request) {
			r.Subject.Type, r.Subject.Txn, r.Subject.TxnContext = token.TxnToken, "txn-1", map[string]any{"action": "buy"}
		}, code: ok, check: func(t *testing.T, c *token.Claims) {
			if c.Txn != "txn-1" || c.TxnContext["action"] != "buy" {
				t.Fatalf("txn %q tctx %v", c.Txn, c.TxnContext)
			}
		}},
	}
}

func exchangeTargetCases() []exchangeCase {
	return []exchangeCase{
		{name: "audience missing", req: func(r *signer.Request) { r.Audience = nil }, code: badRequest},
		{name: "audience empty", req: func(r *signer.Request) { r.Audience = []string{""} }, code: badRequest},
		{name: "resource not an absolute URI", req: func(r *signer.Request) { r.Resource = []string{"api/orders"} }, code: badTarget},
		{name: "resource with a fragment", req: func(r *signer.Request) { r.Resource = []string{"https://api.test/#x"} }, code: badTarget},
		{name: "too many audiences", req: func(r *signer.Request) {
			for i := range 17 {
				r.Audience = append(r.Audience, "aud-"+strings.Repeat("x", i))
			}
		}, code: badRequest},
		{name: "audience and resource merged", req: func(r *signer.Request) {
			r.Audience, r.Resource = []string{callerC.ID, callerC.ID}, []string{"https://api.test/"}
		}, code: ok, check: func(t *testing.T, c *token.Claims) {
			if want := []string{"https://api.test/", callerC.ID}; !reflect.DeepEqual(c.Audience, want) {
				t.Fatalf("aud = %v, want %v", c.Audience, want)
			}
		}},
	}
}

func exchangeScopeAndLifetimeCases() []exchangeCase {
	scope := func(want ...string) func(*testing.T, *token.Claims) {
		return func(t *testing.T, c *token.Claims) {
			if !reflect.DeepEqual(c.Scope, want) {
				t.Fatalf("scope = %q, want %q", c.Scope, want)
			}
		}
	}
	expiry := func(want time.Time) func(*testing.T, *token.Claims) {
		return func(t *testing.T, c *token.Claims) {
			if !c.Expiry.Equal(want) {
				t.Fatalf("exp = %v, want %v", c.Expiry, want)
			}
		}
	}
	return []exchangeCase{
		{name: "scope widening", req: func(r *signer.Request) { r.Scope = "read delete" }, code: badScope},
		{name: "scope widening from an empty subject scope", req: func(r *signer.Request) { r.Subject.Scope = nil }, code: badScope},
		{name: "scope malformed", req: func(r *signer.Request) { r.Scope = `read "write"` }, code: badScope},
		{name: "scope narrowed", req: func(r *signer.Request) { r.Scope = "write  read write" }, code: ok, check: scope("write", "read")},
		{name: "scope empty takes the subject's", req: func(r *signer.Request) { r.Scope = "" },
			code: ok, check: scope("read", "write", "admin")},
		{name: "lifetime longer than the subject's is clamped", req: func(r *signer.Request) { r.Lifetime = 50 * time.Minute },
			code: ok, check: expiry(t0.Add(30 * time.Minute))},
		{name: "lifetime longer than the policy maximum is clamped", req: func(r *signer.Request) {
			r.Subject.Expiry, r.Lifetime = t0.Add(3*time.Hour), 2*time.Hour
		}, code: ok, check: expiry(t0.Add(time.Hour))},
		{name: "lifetime shorter is kept", req: func(r *signer.Request) { r.Lifetime = 5 * time.Minute },
			code: ok, check: expiry(t0.Add(5 * time.Minute))},
		{name: "lifetime negative", req: func(r *signer.Request) { r.Lifetime = -time.Second }, code: badRequest},
	}
}

func TestExchangeMisconfiguredRules(t *testing.T) {
	for name, mod := range map[string]func(*signer.Rules){
		"no max lifetime": func(r *signer.Rules) { r.MaxLifetime = 0 },
		"no act depth":    func(r *signer.Rules) { r.MaxActDepth = 0 },
	} {
		t.Run(name, func(t *testing.T) {
			r := rules()
			mod(&r)
			_, err := r.Exchange(t0, baseRequest())
			var re *signer.RuleError
			if err == nil || errors.As(err, &re) {
				t.Fatalf("got %v, want a configuration error (not a broken rule)", err)
			}
		})
	}
}

func TestClientCredentials(t *testing.T) {
	tests := []struct {
		name  string
		rules signer.Rules
		req   signer.Request
		code  error
		want  *token.Claims
	}{
		{name: "valid", rules: rules(), req: signer.Request{Caller: callerA, Audience: []string{callerB.ID}, Scope: "read", Lifetime: 2 * time.Hour},
			want: &token.Claims{Type: token.AccessToken, Subject: callerA.ID, Audience: []string{callerB.ID}, ClientID: callerA.ID,
				IssuedAt: t0, NotBefore: t0, Expiry: t0.Add(time.Hour), Scope: []string{"read"}, Confirmation: callerA.Thumbprint,
				Evidence: callerA.Evidence, Policy: callerA.Policy}},
		{name: "scope malformed", rules: rules(), req: signer.Request{Caller: callerA, Audience: []string{callerB.ID}, Scope: "a\tb"}, code: badScope},
		{name: "no scope", rules: rules(), req: signer.Request{Caller: callerA, Audience: []string{callerB.ID}},
			want: &token.Claims{Type: token.AccessToken, Subject: callerA.ID, Audience: []string{callerB.ID}, ClientID: callerA.ID,
				IssuedAt: t0, NotBefore: t0, Expiry: t0.Add(time.Hour), Confirmation: callerA.Thumbprint,
				Evidence: callerA.Evidence, Policy: callerA.Policy}},
		{name: "audience missing", rules: rules(), req: signer.Request{Caller: callerA}, code: badRequest},
		{name: "with a subject token", rules: rules(), req: signer.Request{Caller: callerA, Audience: []string{callerB.ID}, Subject: subjectClaims()}, code: badRequest},
		{name: "caller without thumbprint", rules: rules(), req: signer.Request{Caller: signer.Caller{ID: callerA.ID}, Audience: []string{callerB.ID}}, code: noClient},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := tt.rules.ClientCredentials(t0, tt.req)
			if got := kindOf(t, err); got != tt.code {
				t.Fatalf("got %v (%v), want %v", got, err, tt.code)
			}
			if tt.want != nil && !reflect.DeepEqual(c, tt.want) {
				t.Fatalf("claims\n got %+v\nwant %+v", c, tt.want)
			}
		})
	}
}
