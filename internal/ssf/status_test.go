package ssf_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/sigil-dev/sigil/internal/ssf"
)

// TestStatus: a receiver reads and sets its stream's status (SSF 1.0
// §8.1.2): paused, the stream holds what commits and delivers it once
// enabled; disabled, it drops what commits until it is enabled again.
func TestStatus(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	siem := f.token(t, f.siem, audience)
	c := f.create(t, siem, pollStream)
	get := func() ssf.StreamStatus {
		t.Helper()
		status, body := f.call(t, http.MethodGet, ssf.PathStatus+"?stream_id="+c.StreamID, siem, nil)
		var st ssf.StreamStatus
		if err := json.Unmarshal(body, &st); status != http.StatusOK || err != nil {
			t.Fatalf("GET status: %d %s", status, body)
		}
		return st
	}
	set := func(status, reason string) {
		t.Helper()
		want := ssf.StreamStatus{StreamID: c.StreamID, Status: status, Reason: reason}
		code, body := f.call(t, http.MethodPost, ssf.PathStatus, siem, want)
		var st ssf.StreamStatus
		if err := json.Unmarshal(body, &st); code != http.StatusOK || err != nil || st != want {
			t.Fatalf("POST status %s: %d %s", status, code, body)
		}
		if got := get(); got != want {
			t.Fatalf("status after POST %+v: %+v", want, got)
		}
	}
	// delivered polls at once and acknowledges: the jtis of the events
	// (not verifications) it got.
	delivered := func() []string {
		t.Helper()
		r := f.poll(t, siem, c.StreamID, ssf.PollRequest{ReturnImmediately: true})
		if len(r.Sets) > 0 {
			f.poll(t, siem, c.StreamID, ssf.PollRequest{ReturnImmediately: true, Ack: keys(r.Sets), MaxEvents: ptr(0)})
		}
		return subjectsOf(t, r.Sets)
	}
	about := func(subjects []string, jtis ...string) bool {
		if len(subjects) != len(jtis) {
			return false
		}
		for _, jti := range jtis {
			if !slices.ContainsFunc(subjects, func(s string) bool { return strings.Contains(s, jti) }) {
				return false
			}
		}
		return true
	}
	if st := get(); st.Status != ssf.StatusEnabled || st.StreamID != c.StreamID {
		t.Fatalf("a new stream's status: %+v", st)
	}
	set(ssf.StatusPaused, "maintenance window")
	held := f.revokeToken(t, f.other, "revoked by its holder")
	if got := delivered(); len(got) != 0 {
		t.Fatalf("a paused stream delivered %v", got)
	}
	set(ssf.StatusEnabled, "")
	if got := delivered(); !about(got, held) {
		t.Fatalf("enabled again: delivered %v, want the held event of %s", got, held)
	}
	set(ssf.StatusDisabled, "not needed")
	dropped := f.revokeToken(t, f.other, "revoked by its holder")
	if got := delivered(); len(got) != 0 {
		t.Fatalf("a disabled stream delivered %v", got)
	}
	set(ssf.StatusEnabled, "")
	if got := delivered(); len(got) != 0 {
		t.Fatalf("enabled after disabled: delivered %v, want %s dropped", got, dropped)
	}
	after := f.revokeToken(t, f.other, "revoked by its holder")
	if got := delivered(); !about(got, after) {
		t.Fatalf("enabled: delivered %v, want %s", got, after)
	}
}

// TestUpdateStream: PATCH changes the properties it names and keeps the
// others, PUT replaces them; a configuration read back and sent again is
// accepted; transmitter-supplied properties cannot change; the stream
// keeps its id and position.
func TestUpdateStream(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	siem := f.token(t, f.siem, audience)
	c := f.create(t, siem, ssf.StreamConfig{Delivery: ssf.Delivery{Method: ssf.MethodPoll}, Description: "first",
		EventsRequested: []string{ssf.EventSessionRevoked}})
	update := func(method string, body any, want int) ssf.StreamConfig {
		t.Helper()
		status, out := f.call(t, method, ssf.PathStream, siem, body)
		if status != want {
			t.Fatalf("%s %s: %d %s, want %d", method, body, status, out, want)
		}
		var got ssf.StreamConfig
		if want == http.StatusOK {
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatal(err)
			}
		}
		return got
	}
	got := update(http.MethodPatch, map[string]any{"stream_id": c.StreamID, "description": "second"}, http.StatusOK)
	if got.Description != "second" || !slices.Equal(got.EventsRequested, c.EventsRequested) || got.StreamID != c.StreamID ||
		got.Delivery != c.Delivery {
		t.Fatalf("PATCH description: %+v, from %+v", got, c)
	}
	// Read, change, PUT back, transmitter-supplied properties included.
	got.EventsRequested = ssf.Supported
	got = update(http.MethodPut, got, http.StatusOK)
	if !slices.Equal(got.EventsDelivered, ssf.Supported) || got.Description != "second" || got.Delivery != c.Delivery {
		t.Fatalf("PUT: %+v", got)
	}
	got = update(http.MethodPut, map[string]any{"stream_id": c.StreamID, "delivery": map[string]string{"method": ssf.MethodPoll}}, http.StatusOK)
	if got.Description != "" || !slices.Equal(got.EventsDelivered, ssf.Supported) || got.Delivery != c.Delivery {
		t.Fatalf("PUT of the delivery only: %+v", got)
	}
	jti := f.revokeToken(t, f.other, "revoked by its holder")
	r := f.poll(t, siem, c.StreamID, ssf.PollRequest{ReturnImmediately: true})
	if len(r.Sets) != 1 || !strings.Contains(string(mustJSON(claimsOf(t, firstOf(r.Sets))["sub_id"])), jti) {
		t.Fatalf("the updated stream delivered %v, want %s", r.Sets, jti)
	}
	for _, tc := range []struct {
		name, method string
		body         any
	}{
		{"PUT without delivery", http.MethodPut, map[string]any{"stream_id": c.StreamID}},
		{"iss changed", http.MethodPatch, map[string]any{"stream_id": c.StreamID, "iss": "https://evil.example"}},
		{"aud changed", http.MethodPatch, map[string]any{"stream_id": c.StreamID, "aud": []string{f.other.ID}}},
		{"events_delivered set", http.MethodPatch, map[string]any{"stream_id": c.StreamID, "events_delivered": []string{"urn:example"}}},
		{"an unknown field", http.MethodPatch, map[string]any{"stream_id": c.StreamID, "status": "paused"}},
		{"data after the body", http.MethodPatch, []byte(`{"stream_id": "` + c.StreamID + `"} {}`)},
		{"push to a URL not configured", http.MethodPatch, map[string]any{"stream_id": c.StreamID,
			"delivery": ssf.Delivery{Method: ssf.MethodPush, EndpointURL: "https://169.254.169.254/latest"}}},
		{"poll endpoint chosen by the receiver", http.MethodPatch, map[string]any{"stream_id": c.StreamID,
			"delivery": ssf.Delivery{Method: ssf.MethodPoll, EndpointURL: "https://evil.example/"}}},
		{"description too long", http.MethodPatch, map[string]any{"stream_id": c.StreamID, "description": strings.Repeat("x", 1025)}},
		{"no stream_id", http.MethodPatch, map[string]any{"description": "x"}},
	} {
		status, body := f.call(t, tc.method, ssf.PathStream, siem, tc.body)
		if status != http.StatusBadRequest || !strings.Contains(string(body), `"error":"invalid_request"`) {
			t.Errorf("%s: %d %s, want 400 invalid_request", tc.name, status, body)
		}
	}
	got = update(http.MethodPatch, map[string]any{"stream_id": c.StreamID,
		"delivery": ssf.Delivery{Method: ssf.MethodPush, EndpointURL: f.push.srv.URL + "/events", AuthorizationHeader: "Bearer push-secret"}}, http.StatusOK)
	if got.Delivery.Method != ssf.MethodPush || got.Delivery.AuthorizationHeader != "" {
		t.Fatalf("PATCH to push: %+v (the authorization header is never read back)", got.Delivery)
	}
}
