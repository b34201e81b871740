package policy

import (
	"fmt"
	"slices"
	"strings"

	cedar "github.com/cedar-policy/cedar-go"
)

// Decision is the answer to a [Request].
type Decision struct {
	Allowed bool
	Version string // version of the policy set that decided
	// PolicyIDs are the determining policies: the permits that matched if
	// allowed; if denied, the forbids that matched or failed to evaluate,
	// or none when no permit matched (default deny). Sorted.
	PolicyIDs []string
	// Errors say why the request was invalid, or which policies failed to
	// evaluate. A forbid that fails to evaluate denies (fail closed); a
	// permit that fails does not apply.
	Errors    []string
	Evaluated int // policies evaluated; 0 if the request was invalid
}

// Decide evaluates req against the policy set. It never fails: an invalid
// request is denied, with the reason in Errors. Decisions about a
// TokenRequest are cached in the set, keyed by every field of the request
// (see decisionCache): evaluation depends on nothing else.
func (s *Set) Decide(req Request) Decision {
	if r, ok := req.(TokenRequest); ok {
		return s.decided.decide(r, func() Decision { return s.decide(req) })
	}
	return s.decide(req)
}

// decide evaluates req, without the decision cache.
func (s *Set) decide(req Request) Decision {
	d := Decision{Version: s.version}
	b, err := buildChecked(req, s.callers)
	if err != nil {
		d.Errors = []string{"invalid request: " + err.Error()}
		return d
	}
	ok, diag := cedar.Authorize(s.policies, b.entities, b.req)
	d.Evaluated = s.Len()
	d.Allowed = bool(ok)
	for _, r := range diag.Reasons {
		d.PolicyIDs = append(d.PolicyIDs, string(r.PolicyID))
	}
	s.applyErrors(&d, diag.Errors)
	slices.Sort(d.PolicyIDs)
	return d
}

// buildChecked builds req, with the entities of callers cached in callers
// if not nil, and checks the result against the schema, so policies only
// ever see well-typed requests.
func buildChecked(req Request, callers *callerCache) (built, error) {
	if req == nil {
		return built{}, fmt.Errorf("no request")
	}
	b, err := req.build(callers)
	if err != nil {
		return built{}, err
	}
	v, err := validator()
	if err != nil {
		return built{}, err
	}
	if err := v.Request(b.req); err != nil {
		return built{}, fmt.Errorf("does not match the schema: %w", err)
	}
	if err := v.Entities(b.entities); err != nil {
		return built{}, fmt.Errorf("does not match the schema: %w", err)
	}
	return b, nil
}

// applyErrors records evaluation errors. A failing forbid denies: Cedar
// skips policies that error, which for a forbid would fail open.
func (s *Set) applyErrors(d *Decision, errs []cedar.DiagnosticError) {
	for _, e := range errs {
		src := s.sources[e.PolicyID]
		if s.policies.Get(e.PolicyID).Effect() == cedar.Forbid {
			if d.Allowed {
				d.Allowed, d.PolicyIDs = false, nil
			}
			d.PolicyIDs = append(d.PolicyIDs, string(e.PolicyID))
			d.Errors = append(d.Errors, fmt.Sprintf("forbid policy %q at %v failed to evaluate, denying: %s", e.PolicyID, src, e.Message))
			continue
		}
		d.Errors = append(d.Errors, fmt.Sprintf("permit policy %q at %v failed to evaluate: %s", e.PolicyID, src, e.Message))
	}
	slices.Sort(d.Errors)
}

// Reason says in one line why the decision was made, for logs, audit
// entries and error descriptions, e.g.
//
//	denied by forbid policy "no-debug-firmware" (policy set sha256:…)
//	no policy permits this request (policy set sha256:…; evaluated 3 policies)
func (d Decision) Reason() string {
	var b strings.Builder
	switch {
	case d.Allowed:
		fmt.Fprintf(&b, "allowed by %s (policy set %s)", quoteIDs("policy", d.PolicyIDs), d.Version)
	case len(d.PolicyIDs) > 0:
		fmt.Fprintf(&b, "denied by forbid %s (policy set %s)", quoteIDs("policy", d.PolicyIDs), d.Version)
	case d.Evaluated == 0 && len(d.Errors) > 0:
		fmt.Fprintf(&b, "denied without evaluation (policy set %s)", d.Version)
	default:
		fmt.Fprintf(&b, "no policy permits this request (policy set %s; evaluated %d %s)", d.Version, d.Evaluated, plural(d.Evaluated, "policy"))
	}
	for _, e := range d.Errors {
		b.WriteString("; ")
		b.WriteString(e)
	}
	return b.String()
}

// String is [Decision.Reason].
func (d Decision) String() string { return d.Reason() }

func quoteIDs(noun string, ids []string) string {
	q := make([]string, len(ids))
	for i, id := range ids {
		q[i] = fmt.Sprintf("%q", id)
	}
	return plural(len(ids), noun) + " " + strings.Join(q, ", ")
}

func plural(n int, noun string) string {
	if n == 1 {
		return noun
	}
	if strings.HasSuffix(noun, "y") {
		return strings.TrimSuffix(noun, "y") + "ies"
	}
	return noun + "s"
}
