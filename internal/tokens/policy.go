package tokens

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/sigil-dev/sigil/policy"
	"github.com/sigil-dev/sigil/signer"
)

// gate asks policy about one token request, through the hooks of
// signer.Rules and a final check of the token's claims, and remembers its
// answers. Denials become OAuth errors:
//
//   - an audience denied whatever the scopes: invalid_target (RFC 8693
//     §2.2.2: unwilling to issue a token for that target);
//   - a scope denied for an audience that is itself permitted:
//     invalid_scope;
//   - either one by a matching forbid policy: access_denied, the policy
//     having prohibited it explicitly.
//
// Each description names what was denied and the policy set version that
// decided (policy.Decision.Reason).
type gate struct {
	policy Decider
	req    policy.TokenRequest // Caller and Subject; Audience and Scopes vary
	memo   map[string]policy.Decision

	audienceDenied *denial // the first audience denied through Rules.Audience
	scopeDenied    *denial // the first scope denied through Rules.Scope
	permits        []string
}

type denial struct {
	what     string
	decision policy.Decision
}

func newGate(p Decider, caller policy.Caller, subject *policy.Subject) *gate {
	return &gate{policy: p, req: policy.TokenRequest{Caller: caller, Subject: subject}, memo: map[string]policy.Decision{}}
}

func (g *gate) decide(audience string, scopes []string) policy.Decision {
	key := audience + "\x00" + strings.Join(scopes, " ")
	if d, ok := g.memo[key]; ok {
		return d
	}
	req := g.req
	req.Audience, req.Scopes = audience, scopes
	d := g.policy.Decide(req)
	g.memo[key] = d
	if d.Allowed {
		for _, id := range d.PolicyIDs {
			if !slices.Contains(g.permits, id) {
				g.permits = append(g.permits, id)
			}
		}
	}
	return d
}

// audience is signer.Rules.Audience: may the caller have a token for
// audience at all (no scopes)?
func (g *gate) audience(_ signer.Caller, audience string) bool {
	d := g.decide(audience, nil)
	if !d.Allowed && g.audienceDenied == nil {
		g.audienceDenied = &denial{fmt.Sprintf("a token for audience %q", audience), d}
	}
	return d.Allowed
}

// scope is signer.Rules.Scope: may the caller hold scope in a token for
// each of audiences?
func (g *gate) scope(_ signer.Caller, audiences []string, scope string) bool {
	for _, a := range audiences {
		if d := g.decide(a, []string{scope}); !d.Allowed {
			if g.scopeDenied == nil {
				g.scopeDenied = &denial{fmt.Sprintf("scope %q for audience %q", scope, a), d}
			}
			return false
		}
	}
	return true
}

// check asks policy about the token as it will be issued: each audience
// with the whole scope set, which a policy may judge otherwise than each
// scope alone.
func (g *gate) check(c *signer.Claims) error {
	for _, a := range c.Audience {
		if d := g.decide(a, c.Scope); !d.Allowed {
			return denied(signer.InvalidScope, fmt.Sprintf("scope %q for audience %q", strings.Join(c.Scope, " "), a), d)
		}
	}
	return nil
}

// explain turns signer's invalid_target and invalid_scope that came from
// a policy denial into the policy's answer; other errors pass unchanged.
// Rules stops at the first denial it meets, and checks the request's
// shape (malformed scopes, resources that are not URIs, scopes beyond the
// subject's) before it asks policy about a value, so a recorded denial is
// the cause of the error of its kind.
func (g *gate) explain(err error) error {
	var oe *signer.Error
	if !errors.As(err, &oe) {
		return err
	}
	switch {
	case oe.Code == signer.InvalidTarget && g.audienceDenied != nil:
		return denied(signer.InvalidTarget, g.audienceDenied.what, g.audienceDenied.decision)
	case oe.Code == signer.InvalidScope && g.scopeDenied != nil:
		return denied(signer.InvalidScope, g.scopeDenied.what, g.scopeDenied.decision)
	}
	return err
}

func denied(code, what string, d policy.Decision) *signer.Error {
	if len(d.PolicyIDs) > 0 {
		code = signer.AccessDenied
	}
	return oauthError(code, "policy denies %s: %s", what, d.Reason())
}
