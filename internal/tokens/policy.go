package tokens

import (
	"fmt"
	"slices"
	"strings"

	"github.com/sigil-dev/sigil/policy"
	"github.com/sigil-dev/sigil/token"
)

// permit asks policy about the token the rules produced, in this order,
// and returns the ids of the policies that permitted it:
//
//  1. each audience alone (no scopes): a denial is invalid_target;
//  2. each scope with each audience: a denied scope the client asked for
//     is invalid_scope; one inherited from the subject token (no scope
//     parameter) is dropped from the token instead;
//  3. each audience with the token's whole scope set, which a policy may
//     judge otherwise than each scope alone: invalid_scope.
//
// Any denial by a matching forbid policy is access_denied (see denial).
// c's Scope is narrowed in place by step 2.
func permit(p Decider, req policy.TokenRequest, c *token.Claims, asked bool) ([]string, error) {
	d := &decider{policy: p, req: req, memo: map[string]policy.Decision{}}
	for _, a := range c.Audience {
		if dec := d.decide(a, nil); !dec.Allowed {
			return nil, &denial{what: fmt.Sprintf("a token for audience %q", a), decision: dec}
		}
	}
	var scope []string
	for _, s := range c.Scope {
		err := d.scope(c.Audience, s)
		switch {
		case err == nil:
			scope = append(scope, s)
		case asked:
			return nil, err
		}
	}
	c.Scope = scope
	for _, a := range c.Audience {
		if dec := d.decide(a, c.Scope); !dec.Allowed {
			return nil, &denial{scope: true, what: fmt.Sprintf("scope %q for audience %q", strings.Join(c.Scope, " "), a), decision: dec}
		}
	}
	return d.permits, nil
}

// decider asks policy about one token request, remembering its answers
// and the ids of the policies that permitted.
type decider struct {
	policy  Decider
	req     policy.TokenRequest // Caller and Subject; Audience and Scopes vary
	memo    map[string]policy.Decision
	permits []string
}

func (d *decider) decide(audience string, scopes []string) policy.Decision {
	key := audience + "\x00" + strings.Join(scopes, " ")
	if dec, ok := d.memo[key]; ok {
		return dec
	}
	req := d.req
	req.Audience, req.Scopes = audience, scopes
	dec := d.policy.Decide(req)
	d.memo[key] = dec
	if dec.Allowed {
		for _, id := range dec.PolicyIDs {
			if !slices.Contains(d.permits, id) {
				d.permits = append(d.permits, id)
			}
		}
	}
	return dec
}

// scope asks whether the caller may hold scope in a token for each of
// audiences.
func (d *decider) scope(audiences []string, scope string) error {
	for _, a := range audiences {
		if dec := d.decide(a, []string{scope}); !dec.Allowed {
			return &denial{scope: true, what: fmt.Sprintf("scope %q for audience %q", scope, a), decision: dec}
		}
	}
	return nil
}
