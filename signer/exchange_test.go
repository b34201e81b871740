package signer_test

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/signer"
)

const (
	invalidTarget      = signer.InvalidTarget
	invalidScope       = signer.InvalidScope
	unauthorizedClient = signer.UnauthorizedClient
)

// rules permit every audience but "forbidden" ones, and every scope but
// admin.
func rules() signer.Rules {
	return signer.Rules{
		MaxLifetime: time.Hour,
		MaxActDepth: 3,
		Audience: func(_ signer.Caller, aud string) bool {
			return !strings.Contains(aud, "forbidden")
		},
		Scope: func(_ signer.Caller, _ []string, s string) bool { return s != "admin" },
	}
}

// subjectClaims are a verified token of user@example.com issued to B by
// A's exchange, valid for 30 minutes from t0.
func subjectClaims() *signer.Claims {
	return &signer.Claims{
		Type: signer.AccessToken, Issuer: issuer, Subject: "user@example.com", Audience: []string{callerB.ID},
		IssuedAt: t0.Add(-time.Minute), NotBefore: t0.Add(-time.Minute), Expiry: t0.Add(30 * time.Minute),
		ID: "subject-jti", ClientID: callerA.ID, Scope: []string{"read", "write", "admin"},
		Confirmation: callerA.Thumbprint, Actor: &signer.Actor{Subject: callerA.ID},
	}
}

// baseRequest is B asking for a token for C, scope read.
func baseRequest() signer.Request {
	return signer.Request{Caller: callerB, Subject: subjectClaims(), Audience: []string{callerC.ID}, Scope: "read"}
}

func chain(subs ...string) *signer.Actor {
	var a *signer.Actor
	for i := len(subs) - 1; i >= 0; i-- {
		a = &signer.Actor{Subject: subs[i], Actor: a}
	}
	return a
}

type exchangeCase struct {
	name  string
	req   func(r *signer.Request)
	code  string
	check func(t *testing.T, c *signer.Claims)
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
			if got := oauthCode(t, err); got != tt.code {
				t.Fatalf("got code %q (%v), want %q", got, err, tt.code)
			}
			if tt.check != nil {
				tt.check(t, c)
			}
		})
	}
}

func exchangeGrantCases() []exchangeCase {
	return []exchangeCase{
		{name: "valid", code: ok, check: func(t *testing.T, c *signer.Claims) {
			want := &signer.Claims{
				Type: signer.AccessToken, Subject: "user@example.com", Audience: []string{callerC.ID},
				IssuedAt: t0, NotBefore: t0, Expiry: t0.Add(30 * time.Minute), ClientID: callerB.ID,
				Scope: []string{"read"}, Confirmation: callerB.Thumbprint,
				Actor:    chain(callerB.ID, callerA.ID),
				Evidence: callerB.Evidence, Policy: callerB.Policy,
			}
			if !reflect.DeepEqual(c, want) {
				t.Fatalf("claims\n got %+v\nwant %+v", c, want)
			}
		}},
		{name: "missing subject token", req: func(r *signer.Request) { r.Subject = nil }, code: invalidRequest},
		{name: "subject token for another audience", req: func(r *signer.Request) { r.Subject.Audience = []string{callerC.ID} }, code: invalidGrant},
		{name: "subject token for the caller among others", req: func(r *signer.Request) {
			r.Subject.Audience = []string{callerC.ID, callerB.ID}
		}, code: ok},
		{name: "subject token expired", req: func(r *signer.Request) { r.Subject.Expiry = t0 }, code: invalidGrant},
		{name: "cnf is the caller's, not the subject token's", code: ok, check: func(t *testing.T, c *signer.Claims) {
			if c.Confirmation != callerB.Thumbprint {
				t.Fatalf("cnf = %q, want the caller's %q", c.Confirmation, callerB.Thumbprint)
			}
		}},
		{name: "act chain at the limit", req: func(r *signer.Request) {
			r.Subject.Actor = chain("spiffe://sigil.test/workload/x", "spiffe://sigil.test/workload/y", callerA.ID)
		}, code: invalidGrant},
		{name: "act chain one below the limit", req: func(r *signer.Request) {
			r.Subject.Actor = chain("spiffe://sigil.test/workload/y", callerA.ID)
		}, code: ok, check: func(t *testing.T, c *signer.Claims) {
			if want := chain(callerB.ID, "spiffe://sigil.test/workload/y", callerA.ID); !reflect.DeepEqual(c.Actor, want) {
				t.Fatalf("act depth %d, want %d", c.Actor.Depth(), want.Depth())
			}
		}},
		{name: "subject token without act", req: func(r *signer.Request) { r.Subject.Actor = nil }, code: ok,
			check: func(t *testing.T, c *signer.Claims) {
				if !reflect.DeepEqual(c.Actor, chain(callerB.ID)) {
					t.Fatalf("act = %+v", c.Actor)
				}
			}},
	}
}

func exchangeActorCases() []exchangeCase {
	return []exchangeCase{
		{name: "actor token of another workload", req: func(r *signer.Request) {
			r.Actor = &signer.Claims{Subject: callerA.ID, Confirmation: callerA.Thumbprint, Expiry: t0.Add(time.Minute)}
		}, code: invalidGrant},
		{name: "actor token with the caller's sub and another certificate", req: func(r *signer.Request) {
			r.Actor = &signer.Claims{Subject: callerB.ID, Confirmation: callerA.Thumbprint, Expiry: t0.Add(time.Minute)}
		}, code: invalidGrant},
		{name: "actor token without cnf", req: func(r *signer.Request) {
			r.Actor = &signer.Claims{Subject: callerB.ID, Expiry: t0.Add(time.Minute)}
		}, code: invalidGrant},
		{name: "actor token expired", req: func(r *signer.Request) {
			r.Actor = &signer.Claims{Subject: callerB.ID, Confirmation: callerB.Thumbprint, Expiry: t0}
		}, code: invalidGrant},
		{name: "actor token of the caller", req: func(r *signer.Request) {
			r.Actor = &signer.Claims{Subject: callerB.ID, Confirmation: callerB.Thumbprint, Expiry: t0.Add(time.Minute)}
		}, code: ok},
		{name: "caller without SPIFFE ID", req: func(r *signer.Request) { r.Caller.ID = "" }, code: unauthorizedClient},
		{name: "caller without certificate thumbprint", req: func(r *signer.Request) { r.Caller.Thumbprint = "" }, code: unauthorizedClient},
		{name: "external subject keeps its issuer", req: func(r *signer.Request) { r.Subject.SubjectIssuer = idpIssuer }, code: ok,
			check: func(t *testing.T, c *signer.Claims) {
				if c.SubjectIssuer != idpIssuer || c.Subject != "user@example.com" {
					t.Fatalf("sub %q from %q", c.Subject, c.SubjectIssuer)
				}
			}},
		{name: "transaction token subject carries txn", req: func(r *signer.Request) {
			r.Subject.Type, r.Subject.Txn, r.Subject.TxnContext = signer.TxnToken, "txn-1", map[string]any{"action": "buy"}
		}, code: ok, check: func(t *testing.T, c *signer.Claims) {
			if c.Txn != "txn-1" || c.TxnContext["action"] != "buy" {
				t.Fatalf("txn %q tctx %v", c.Txn, c.TxnContext)
			}
		}},
	}
}

func exchangeTargetCases() []exchangeCase {
	return []exchangeCase{
		{name: "audience missing", req: func(r *signer.Request) { r.Audience = nil }, code: invalidRequest},
		{name: "audience empty", req: func(r *signer.Request) { r.Audience = []string{""} }, code: invalidRequest},
		{name: "audience not permitted", req: func(r *signer.Request) { r.Audience = []string{"spiffe://sigil.test/workload/forbidden"} }, code: invalidTarget},
		{name: "one of two audiences not permitted", req: func(r *signer.Request) {
			r.Audience = []string{callerC.ID, "spiffe://sigil.test/workload/forbidden"}
		}, code: invalidTarget},
		{name: "resource not permitted", req: func(r *signer.Request) { r.Audience, r.Resource = nil, []string{"https://forbidden.test/"} }, code: invalidTarget},
		{name: "resource not an absolute URI", req: func(r *signer.Request) { r.Resource = []string{"api/orders"} }, code: invalidTarget},
		{name: "resource with a fragment", req: func(r *signer.Request) { r.Resource = []string{"https://api.test/#x"} }, code: invalidTarget},
		{name: "too many audiences", req: func(r *signer.Request) {
			for i := range 17 {
				r.Audience = append(r.Audience, "aud-"+strings.Repeat("x", i))
			}
		}, code: invalidRequest},
		{name: "audience and resource merged", req: func(r *signer.Request) {
			r.Audience, r.Resource = []string{callerC.ID, callerC.ID}, []string{"https://api.test/"}
		}, code: ok, check: func(t *testing.T, c *signer.Claims) {
			if want := []string{"https://api.test/", callerC.ID}; !reflect.DeepEqual(c.Audience, want) {
				t.Fatalf("aud = %v, want %v", c.Audience, want)
			}
		}},
	}
}

func exchangeScopeAndLifetimeCases() []exchangeCase {
	scope := func(want ...string) func(*testing.T, *signer.Claims) {
		return func(t *testing.T, c *signer.Claims) {
			if !reflect.DeepEqual(c.Scope, want) {
				t.Fatalf("scope = %q, want %q", c.Scope, want)
			}
		}
	}
	expiry := func(want time.Time) func(*testing.T, *signer.Claims) {
		return func(t *testing.T, c *signer.Claims) {
			if !c.Expiry.Equal(want) {
				t.Fatalf("exp = %v, want %v", c.Expiry, want)
			}
		}
	}
	return []exchangeCase{
		{name: "scope widening", req: func(r *signer.Request) { r.Scope = "read delete" }, code: invalidScope},
		{name: "scope widening from an empty subject scope", req: func(r *signer.Request) { r.Subject.Scope = nil }, code: invalidScope},
		{name: "scope not permitted by policy", req: func(r *signer.Request) { r.Scope = "admin" }, code: invalidScope},
		{name: "scope malformed", req: func(r *signer.Request) { r.Scope = `read "write"` }, code: invalidScope},
		{name: "scope narrowed", req: func(r *signer.Request) { r.Scope = "write  read write" }, code: ok, check: scope("write", "read")},
		{name: "scope empty takes the subject's, less what policy denies", req: func(r *signer.Request) { r.Scope = "" },
			code: ok, check: scope("read", "write")},
		{name: "lifetime longer than the subject's is clamped", req: func(r *signer.Request) { r.Lifetime = 50 * time.Minute },
			code: ok, check: expiry(t0.Add(30 * time.Minute))},
		{name: "lifetime longer than the policy maximum is clamped", req: func(r *signer.Request) {
			r.Subject.Expiry, r.Lifetime = t0.Add(3*time.Hour), 2*time.Hour
		}, code: ok, check: expiry(t0.Add(time.Hour))},
		{name: "lifetime shorter is kept", req: func(r *signer.Request) { r.Lifetime = 5 * time.Minute },
			code: ok, check: expiry(t0.Add(5 * time.Minute))},
		{name: "lifetime negative", req: func(r *signer.Request) { r.Lifetime = -time.Second }, code: invalidRequest},
	}
}

func TestExchangeMisconfiguredRules(t *testing.T) {
	for name, mod := range map[string]func(*signer.Rules){
		"no max lifetime":    func(r *signer.Rules) { r.MaxLifetime = 0 },
		"no act depth":       func(r *signer.Rules) { r.MaxActDepth = 0 },
		"no audience policy": func(r *signer.Rules) { r.Audience = nil },
	} {
		t.Run(name, func(t *testing.T) {
			r := rules()
			mod(&r)
			_, err := r.Exchange(t0, baseRequest())
			var oe *signer.Error
			if err == nil || errors.As(err, &oe) {
				t.Fatalf("got %v, want a configuration error (not an OAuth error)", err)
			}
		})
	}
}

func TestClientCredentials(t *testing.T) {
	noScopePolicy := rules()
	noScopePolicy.Scope = nil
	tests := []struct {
		name  string
		rules signer.Rules
		req   signer.Request
		code  string
		want  *signer.Claims
	}{
		{name: "valid", rules: rules(), req: signer.Request{Caller: callerA, Audience: []string{callerB.ID}, Scope: "read", Lifetime: 2 * time.Hour},
			want: &signer.Claims{Type: signer.AccessToken, Subject: callerA.ID, Audience: []string{callerB.ID}, ClientID: callerA.ID,
				IssuedAt: t0, NotBefore: t0, Expiry: t0.Add(time.Hour), Scope: []string{"read"}, Confirmation: callerA.Thumbprint,
				Evidence: callerA.Evidence, Policy: callerA.Policy}},
		{name: "scope not permitted", rules: rules(), req: signer.Request{Caller: callerA, Audience: []string{callerB.ID}, Scope: "admin"}, code: invalidScope},
		{name: "scope without scope policy", rules: noScopePolicy, req: signer.Request{Caller: callerA, Audience: []string{callerB.ID}, Scope: "read"}, code: invalidScope},
		{name: "no scope without scope policy", rules: noScopePolicy, req: signer.Request{Caller: callerA, Audience: []string{callerB.ID}},
			want: &signer.Claims{Type: signer.AccessToken, Subject: callerA.ID, Audience: []string{callerB.ID}, ClientID: callerA.ID,
				IssuedAt: t0, NotBefore: t0, Expiry: t0.Add(time.Hour), Confirmation: callerA.Thumbprint,
				Evidence: callerA.Evidence, Policy: callerA.Policy}},
		{name: "audience missing", rules: rules(), req: signer.Request{Caller: callerA}, code: invalidRequest},
		{name: "audience not permitted", rules: rules(), req: signer.Request{Caller: callerA, Audience: []string{"forbidden"}}, code: invalidTarget},
		{name: "with a subject token", rules: rules(), req: signer.Request{Caller: callerA, Audience: []string{callerB.ID}, Subject: subjectClaims()}, code: invalidRequest},
		{name: "caller without thumbprint", rules: rules(), req: signer.Request{Caller: signer.Caller{ID: callerA.ID}, Audience: []string{callerB.ID}}, code: unauthorizedClient},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := tt.rules.ClientCredentials(t0, tt.req)
			if got := oauthCode(t, err); got != tt.code {
				t.Fatalf("got code %q (%v), want %q", got, err, tt.code)
			}
			if tt.want != nil && !reflect.DeepEqual(c, tt.want) {
				t.Fatalf("claims\n got %+v\nwant %+v", c, tt.want)
			}
		})
	}
}

func TestThumbprint(t *testing.T) {
	// SHA-256 of "abc", base64url without padding.
	if got, want := signer.Thumbprint([]byte("abc")), "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0"; got != want {
		t.Fatalf("Thumbprint = %q, want %q", got, want)
	}
}
