package ssf_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/internal/ssf"
	"github.com/sigil-dev/sigil/testenv"
)

// TestPush: a push stream's SETs are posted to the receiver's configured
// endpoint with its authorization header, in order; a failed push is
// retried until accepted, and an accepted SET is not posted again, also
// by a restarted transmitter.
func TestPush(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	bearer := f.token(t, f.siem, audience)
	f.push.mu.Lock()
	f.push.script = []int{http.StatusServiceUnavailable, http.StatusInternalServerError} // the first push fails twice
	f.push.mu.Unlock()
	c := f.create(t, bearer, ssf.StreamConfig{Delivery: ssf.Delivery{Method: ssf.MethodPush,
		EndpointURL: f.push.srv.URL + "/events", AuthorizationHeader: "Bearer receiver-secret"}})
	if c.Delivery.AuthorizationHeader != "" {
		t.Errorf("the authorization header was read back")
	}
	a, b := f.revokeToken(t, f.other, "one"), f.revokeToken(t, f.other, "two")
	testenv.WaitFor(t, 10*time.Second, "two SETs pushed and recorded as taken", func() bool {
		s, err := f.env.Store.Stream(t.Context(), c.StreamID)
		head, _ := f.env.Store.LatestRevocationSeq(t.Context())
		return len(f.push.got()) == 2 && err == nil && s.Cursor == head
	})
	var jtis []string
	for _, raw := range f.push.got() {
		s := f.verifySET(t, raw)
		sub, _ := s.claims["sub_id"].(map[string]any)
		jtis = append(jtis, sub["jti"].(string))
		if !slices.Equal(toStrings(s.claims["aud"]), []string{f.siem.ID}) {
			t.Errorf("pushed SET for %v", s.claims["aud"])
		}
	}
	if !slices.Equal(jtis, []string{a, b}) {
		t.Errorf("pushed %v, want %v in order", jtis, []string{a, b})
	}
	f.push.mu.Lock()
	tries, auth := f.push.tries, f.push.auth
	f.push.mu.Unlock()
	if tries != 4 || slices.ContainsFunc(auth, func(h string) bool { return h != "Bearer receiver-secret" }) {
		t.Errorf("%d pushes with headers %q, want 4 (two failures, two SETs) with the stream's header", tries, auth)
	}
	if n := counter(t, f, "push", "accepted"); n != 2 {
		t.Errorf("sigil_ssf_sets_total{push,accepted} = %v, want 2", n)
	}
	if n := counter(t, f, "push", "failed"); n != 2 {
		t.Errorf("sigil_ssf_sets_total{push,failed} = %v, want 2", n)
	}

	f.stop()
	f.start(t, f.cfg) // a restarted sigild
	c2 := f.revokeToken(t, f.other, "three")
	testenv.WaitFor(t, 10*time.Second, "the third SET pushed", func() bool { return len(f.push.got()) >= 3 })
	got := f.push.got()
	if len(got) != 3 || !strings.Contains(string(mustJSON(claimsOf(t, got[2]))), c2) {
		t.Errorf("after a restart: %d SETs pushed, want the 3rd only once", len(got))
	}
}

// TestPushRejected: a SET the receiver refuses (400) is not pushed again,
// and the next one is.
func TestPushRejected(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	bearer := f.token(t, f.siem, audience)
	f.push.mu.Lock()
	f.push.script = []int{http.StatusBadRequest}
	f.push.mu.Unlock()
	f.create(t, bearer, ssf.StreamConfig{Delivery: ssf.Delivery{Method: ssf.MethodPush, EndpointURL: f.push.srv.URL + "/events"}})
	f.revokeToken(t, f.other, "refused")
	b := f.revokeToken(t, f.other, "accepted")
	testenv.WaitFor(t, 10*time.Second, "the second SET pushed", func() bool { return len(f.push.got()) == 1 })
	if got := f.push.got(); !strings.Contains(string(mustJSON(claimsOf(t, got[0]))), b) {
		t.Errorf("pushed %v, want %s", claimsOf(t, got[0]), b)
	}
	f.push.mu.Lock()
	defer f.push.mu.Unlock()
	if f.push.tries != 2 {
		t.Errorf("%d pushes, want 2: the refused SET once, the next once", f.push.tries)
	}
}

// counter is the transmitter's sigil_ssf_sets_total for method and
// outcome, gathered from its registry.
func counter(t *testing.T, f *fixture, method, outcome string) float64 {
	t.Helper()
	families, err := f.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n float64
	for _, mf := range families {
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if mf.GetName() == "sigil_ssf_sets_total" && labels["method"] == method && labels["outcome"] == outcome {
				n += m.GetCounter().GetValue()
			}
		}
	}
	return n
}
