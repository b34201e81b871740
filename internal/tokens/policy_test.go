package tokens

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/sigil-dev/sigil/policy"
	"github.com/sigil-dev/sigil/token"
)

// rulesOf is a Decider that permits what allow says (by audience and the
// space-separated scopes asked), with a policy id naming what it
// permitted, denies the rest by default, and forbids what forbid says.
type rulesOf struct {
	allow, forbid func(aud, scopes string) bool
	asked         []string
}

func (r *rulesOf) Decide(req policy.Request) policy.Decision {
	tr := req.(policy.TokenRequest)
	scopes := strings.Join(tr.Scopes, " ")
	r.asked = append(r.asked, tr.Audience+"|"+scopes)
	switch {
	case r.forbid != nil && r.forbid(tr.Audience, scopes):
		return policy.Decision{Version: "v1", PolicyIDs: []string{"forbid-it"}}
	case r.allow(tr.Audience, scopes):
		return policy.Decision{Allowed: true, Version: "v1", PolicyIDs: []string{"permit-" + tr.Audience}}
	}
	return policy.Decision{Version: "v1"}
}

// TestPermit runs policy's step of a token request over claims for the
// audiences "a" and "b" with the scopes read and write. The client is told
// what was denied and whether a policy forbids it or none permits it,
// never the policy set version nor how many policies were evaluated (the
// attack: error_description mapped the policy set).
func TestPermit(t *testing.T) {
	noAdmin := func(aud, scopes string) bool { return !strings.Contains(scopes, "admin") && aud != "evil" }
	tests := []struct {
		name    string
		aud     []string
		scope   []string
		asked   bool // the client sent a scope parameter
		allow   func(aud, scopes string) bool
		forbid  func(aud, scopes string) bool
		code    string // of the OAuth error, "" for permitted
		desc    string
		scopeTo []string // the token's scope after policy
	}{
		{name: "permitted", aud: []string{"a", "b"}, scope: []string{"read", "write"}, asked: true, allow: noAdmin, scopeTo: []string{"read", "write"}},
		{name: "audience denied", aud: []string{"a", "evil"}, scope: []string{"read"}, asked: true, allow: noAdmin,
			code: InvalidTarget, desc: `policy denies a token for audience "evil": no policy permits it`},
		{name: "asked scope denied", aud: []string{"a"}, scope: []string{"read", "admin"}, asked: true, allow: noAdmin,
			code: InvalidScope, desc: `policy denies scope "admin" for audience "a": no policy permits it`},
		{name: "inherited scope dropped", aud: []string{"a"}, scope: []string{"read", "admin", "write"}, asked: false, allow: noAdmin,
			scopeTo: []string{"read", "write"}},
		{name: "whole scope set denied", aud: []string{"a"}, scope: []string{"read", "write"}, asked: true,
			allow: func(_, scopes string) bool { return scopes != "read write" }, code: InvalidScope, desc: `policy denies scope "read write" for audience "a": no policy permits it`},
		{name: "audience forbidden", aud: []string{"a"}, asked: true, allow: noAdmin,
			forbid: func(aud, _ string) bool { return aud == "a" }, code: AccessDenied, desc: `policy denies a token for audience "a": a policy forbids it`},
		{name: "scope forbidden", aud: []string{"a"}, scope: []string{"write"}, asked: true, allow: noAdmin,
			forbid: func(_, scopes string) bool { return scopes == "write" }, code: AccessDenied, desc: `policy denies scope "write" for audience "a": a policy forbids it`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := &rulesOf{allow: tt.allow, forbid: tt.forbid}
			c := &token.Claims{Audience: tt.aud, Scope: tt.scope}
			permits, err := permit(d, policy.TokenRequest{}, c, tt.asked)
			if tt.code == "" {
				if err != nil || !slices.Equal(c.Scope, tt.scopeTo) || len(permits) != len(tt.aud) {
					t.Fatalf("permit = %v, %v; scope %q", permits, err, c.Scope)
				}
				return
			}
			var oe *Error
			if !errors.As(oauthError(err), &oe) || oe.Code != tt.code || oe.Description != tt.desc {
				t.Fatalf("got %v, want %s: %s", err, tt.code, tt.desc)
			}
			// How policy decided is for the server log, not the client.
			if !strings.Contains(oe.Error(), "(policy set v1") {
				t.Errorf("error for the log %q does not say how policy decided", oe.Error())
			}
		})
	}
}

// TestPermitAsksOnce: a decision is asked once per audience and scope
// set, however many steps need it.
func TestPermitAsksOnce(t *testing.T) {
	d := &rulesOf{allow: func(string, string) bool { return true }}
	c := &token.Claims{Audience: []string{"a"}, Scope: []string{"read"}}
	if _, err := permit(d, policy.TokenRequest{}, c, true); err != nil {
		t.Fatal(err)
	}
	if want := []string{"a|", "a|read"}; !slices.Equal(d.asked, want) {
		t.Fatalf("asked %q, want %q", d.asked, want)
	}
}
