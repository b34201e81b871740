package server

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"time"

	"github.com/sigil-dev/sigil/api"
	"github.com/sigil-dev/sigil/internal/device"
	"github.com/sigil-dev/sigil/internal/trust"
	"github.com/sigil-dev/sigil/policy"
)

// PolicyPlanner says what a policy set would revoke; *trust.Reevaluator is
// one.
type PolicyPlanner interface {
	Plan(ctx context.Context, set trust.PolicySet, now time.Time) (trust.Plan, error)
}

var _ PolicyPlanner = (*trust.Reevaluator)(nil)

// policyRoutes serves what-if to the identities in PolicyOperators.
func (s *Server) policyRoutes(mux *http.ServeMux) {
	if s.PolicyPlanner == nil {
		return
	}
	op := allowList{ids: s.PolicyOperators, field: "policy.operators", action: "ask what a policy would revoke"}
	mux.HandleFunc("POST "+api.PathPolicyWhatIf, s.listed(op, s.policyWhatIf))
}

// policyWhatIf compiles the candidate set sent and answers what it would
// revoke, changing nothing.
func (s *Server) policyWhatIf(w http.ResponseWriter, r *http.Request) {
	var req api.WhatIfRequest
	if !s.decode(w, r, &req) {
		return
	}
	files := make(map[string][]byte, len(req.Files))
	for name, data := range req.Files {
		files[name] = []byte(data)
	}
	set, err := policy.Compile("what-if", files)
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", "candidate policy set: "+err.Error())
		return
	}
	plan, err := s.PolicyPlanner.Plan(r.Context(), set, time.Now())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := api.WhatIf{Version: plan.Version, Devices: plan.Devices, Certificates: plan.Certificates,
		Held: plan.Exceeds(s.MaxRevokeFraction), Revoke: []api.WhatIfRevoke{}}
	if s.PolicyVersion != nil {
		out.ActiveVersion = s.PolicyVersion()
	}
	for _, rv := range plan.Revoke {
		out.Revoke = append(out.Revoke, api.WhatIfRevoke(rv))
	}
	for _, u := range plan.Unverifiable {
		out.Unverifiable = append(out.Unverifiable, api.WhatIfUnchecked(u))
	}
	s.Log.InfoContext(r.Context(), "policy what-if", "version", plan.Version, "revoke", len(plan.Revoke), "devices", plan.Devices)
	writeJSON(w, http.StatusOK, out)
}

// allowList names who may use an endpoint: the SPIFFE IDs in a
// configuration field, for an action.
type allowList struct {
	ids    []string
	field  string // "audit.readers"
	action string // "read audit entries"
	// whenEmpty ends the refusal when nobody is listed.
	whenEmpty string
}

// listed serves next only to a caller whose client certificate
// authenticates (device.Authenticate) as one of l.ids.
func (s *Server) listed(l allowList, next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.Certificates == nil || len(l.ids) == 0 {
			writeError(w, http.StatusForbidden, "forbidden", "nobody may "+l.action+" over the API ("+l.field+" is empty)"+l.whenEmpty)
			return
		}
		rec, err := device.Authenticate(r.Context(), s.Certificates, peerCertificate(r), time.Now())
		switch {
		case errors.Is(err, device.ErrNotAuthenticated):
			s.Log.InfoContext(r.Context(), "request refused", "path", r.URL.Path, "err", err)
			writeError(w, http.StatusUnauthorized, "unauthenticated",
				"mutual TLS with a current certificate of an identity listed in "+l.field+" is needed to "+l.action)
			return
		case err != nil:
			s.fail(w, r, err)
			return
		case !slices.Contains(l.ids, rec.SPIFFEID):
			s.Log.InfoContext(r.Context(), "request refused", "path", r.URL.Path, "spiffe_id", rec.SPIFFEID)
			writeError(w, http.StatusForbidden, "forbidden", "this identity may not "+l.action+" (not in "+l.field+")")
			return
		}
		next(w, r)
	}
}
