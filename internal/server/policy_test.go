package server

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"testing"

	"github.com/sigil-dev/sigil/api"
	"github.com/sigil-dev/sigil/internal/device"
	"github.com/sigil-dev/sigil/internal/tokens/tokenstest"
	"github.com/sigil-dev/sigil/internal/trust"
	"github.com/sigil-dev/sigil/policy"
)

const operator = "spiffe://sigil.test/workload/operator"

// What-if, only for policy.operators: the candidate set's revocations,
// judged on the stored evidence, exactly the certificate it no longer
// permits, and nothing changed; anyone else is refused (401 without an
// acceptable certificate, 403 for another identity), and a malformed
// candidate is a 400.
func TestPolicyWhatIf(t *testing.T) {
	t.Parallel()
	e := tokenstest.New(t)
	planner := &trust.Reevaluator{Store: e.Store, Verifier: e.Config.Attest, MaxRevokeFraction: 0.5}
	o := serve(t, e, nil, func(s *Server) {
		s.PolicyPlanner, s.PolicyOperators, s.Certificates, s.MaxRevokeFraction = planner, []string{operator}, e.Store, 0.5
		s.PolicyVersion = func() string { return e.Policy.Version() }
	})
	orders, op := e.Workload(t, "orders"), e.Client(t, operator)
	files, err := policy.Files(filepath.Join("..", "..", "testenv", "policy"))
	if err != nil {
		t.Fatal(err)
	}
	req := api.WhatIfRequest{Files: map[string]string{"orders.cedar": `@id("no-orders")
forbid (principal, action, resource) when { resource == Sigil::Identity::"spiffe://sigil.test/workload/orders" };`}}
	for name, data := range files {
		req.Files[name] = string(data)
	}

	status, body := postWhatIf(t, o.client(op), o.url, req)
	var got api.WhatIf
	if err := json.Unmarshal(body, &got); status != http.StatusOK || err != nil {
		t.Fatalf("what-if as the operator: %d %s", status, body)
	}
	if len(got.Revoke) != 1 || got.Revoke[0].Serial != device.Serial(orders.Cert) || got.Revoke[0].SPIFFEID != orders.ID ||
		got.Certificates != 2 || got.ActiveVersion != e.Policy.Version() || got.Held {
		t.Errorf("what-if = %+v; want exactly orders' certificate of the 2 evaluated", got)
	}
	if rec, err := e.Store.Certificate(t.Context(), device.Serial(orders.Cert)); err != nil || rec.RevokedAt != nil {
		t.Errorf("what-if changed the store: %+v, %v", rec, err)
	}
	for _, tc := range []struct {
		name   string
		c      *http.Client
		req    api.WhatIfRequest
		status int
	}{
		{"no certificate", o.client(nil), req, http.StatusUnauthorized},
		{"not an operator", o.client(orders), req, http.StatusForbidden},
		{"a path for a file name", o.client(op), api.WhatIfRequest{Files: map[string]string{"../x.cedar": "x"}}, http.StatusBadRequest},
		{"an invalid policy", o.client(op), api.WhatIfRequest{Files: map[string]string{"x.cedar": "permit (principal, action, resource);"}}, http.StatusBadRequest},
		{"no files", o.client(op), api.WhatIfRequest{}, http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if status, body := postWhatIf(t, tc.c, o.url, tc.req); status != tc.status || bytes.Contains(body, []byte(`"revoke"`)) {
				t.Errorf("what-if = %d %s, want %d and no plan", status, body, tc.status)
			}
		})
	}
}

func postWhatIf(t *testing.T, c *http.Client, url string, req api.WhatIfRequest) (int, []byte) {
	t.Helper()
	data, _ := json.Marshal(req)
	resp, err := c.Post(url+api.PathPolicyWhatIf, "application/json", bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}
