package ssf_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/internal/ssf"
	"github.com/sigil-dev/sigil/internal/tokens/tokenstest"
)

var pollStream = ssf.StreamConfig{Delivery: ssf.Delivery{Method: ssf.MethodPoll}, Description: "siem"}

func TestMetadata(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	status, body := f.call(t, http.MethodGet, ssf.PathConfiguration, "", nil)
	var m map[string]any
	if err := json.Unmarshal(body, &m); status != http.StatusOK || err != nil {
		t.Fatalf("GET %s: %d %s", ssf.PathConfiguration, status, body)
	}
	want := map[string]any{
		"spec_version": "1_0", "issuer": tokenstest.Issuer, "jwks_uri": tokenstest.Issuer + "/jwks.json",
		"configuration_endpoint": tokenstest.Issuer + "/ssf/stream", "verification_endpoint": tokenstest.Issuer + "/ssf/verify",
		"status_endpoint":         tokenstest.Issuer + "/ssf/status",
		"add_subject_endpoint":    tokenstest.Issuer + "/ssf/subjects:add",
		"remove_subject_endpoint": tokenstest.Issuer + "/ssf/subjects:remove",
		"default_subjects":        "ALL",
	}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %v, want %v", k, m[k], v)
		}
	}
	methods, _ := json.Marshal(m["delivery_methods_supported"])
	schemes, _ := json.Marshal(m["authorization_schemes"])
	if string(methods) != `["urn:ietf:rfc:8935","urn:ietf:rfc:8936"]` || string(schemes) != `[{"spec_urn":"urn:ietf:rfc:6749"}]` {
		t.Errorf("delivery_methods_supported %s, authorization_schemes %s", methods, schemes)
	}
}

// TestPoll: a receiver creates a poll stream, hears the token and
// certificate revocations committed after, as CAEP SETs for its aud
// signed with the token keys, acknowledges them and hears them no more.
func TestPoll(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	bearer := f.token(t, f.siem, audience)
	before := f.revokeToken(t, f.other, "revoked by its holder") // before the stream: not sent
	c := f.create(t, bearer, pollStream)
	if c.Delivery.EndpointURL != tokenstest.Issuer+ssf.PathPoll+c.StreamID || !slices.Equal(c.Aud, []string{f.siem.ID}) ||
		!slices.Equal(c.EventsDelivered, ssf.Supported) || c.Iss != tokenstest.Issuer {
		t.Fatalf("stream = %+v", c)
	}
	jti := f.revokeToken(t, f.other, "revoked by its holder")
	victim := f.env.Workload(t, "victim")
	f.env.RevokeCertificate(t, victim)

	got := f.poll(t, bearer, c.StreamID, ssf.PollRequest{})
	if len(got.Sets) != 2 {
		t.Fatalf("poll: %d SETs, want 2 (token, certificate): %v", len(got.Sets), got.Sets)
	}
	byType := map[string]map[string]any{}
	for id, raw := range got.Sets {
		s := f.verifySET(t, raw)
		if s.typ != "secevent+jwt" || s.claims["iss"] != tokenstest.Issuer || s.claims["jti"] != id ||
			!slices.Equal(toStrings(s.claims["aud"]), []string{f.siem.ID}) || s.claims["sub"] != nil || s.claims["exp"] != nil {
			t.Errorf("SET %s: typ %q, claims %v", id, s.typ, s.claims)
		}
		events, _ := s.claims["events"].(map[string]any)
		for typ, ev := range events {
			byType[typ] = map[string]any{"sub_id": string(mustJSON(s.claims["sub_id"])), "event": string(mustJSON(ev))}
		}
	}
	wantToken := `{"format":"jwt_id","iss":"` + tokenstest.Issuer + `","jti":"` + jti + `"}`
	rec, err := f.env.Store.Certificate(t.Context(), serial(victim))
	if err != nil {
		t.Fatal(err)
	}
	wantCert := `{"device":{"format":"opaque","id":"` + rec.EKHash + `"},"format":"complex","user":{"format":"uri","uri":"` + victim.ID + `"}}`
	tok, cert := byType[ssf.EventSessionRevoked], byType[ssf.EventCredentialChange]
	if tok == nil || tok["sub_id"] != wantToken || !strings.HasPrefix(tok["event"].(string), `{"event_timestamp":`) ||
		!strings.HasSuffix(tok["event"].(string), `,"reason_admin":{"en":"revoked by its holder"}}`) {
		t.Errorf("session-revoked: %v, want subject %s", tok, wantToken)
	}
	wantChange := `,"reason_admin":{"en":"key compromise"},"x509_issuer":"` + victim.Cert.Issuer.String() + `","x509_serial":"` + serial(victim) + `"}`
	if cert == nil || cert["sub_id"] != wantCert || !strings.HasPrefix(cert["event"].(string), `{"change_type":"revoke","credential_type":"x509","event_timestamp":`) ||
		!strings.HasSuffix(cert["event"].(string), `,"friendly_name":"`+victim.ID+`","initiating_entity":"admin"`+wantChange) {
		t.Errorf("credential-change: %v, want subject %s and %s", cert, wantCert, wantChange)
	}
	if strings.Contains(string(mustJSON(byType)), before) {
		t.Errorf("a revocation from before the stream was sent")
	}

	again := f.poll(t, bearer, c.StreamID, ssf.PollRequest{ReturnImmediately: true})
	if !sameKeys(again.Sets, got.Sets) {
		t.Fatalf("unacknowledged SETs not handed out again: %v", keys(again.Sets))
	}
	acked := f.poll(t, bearer, c.StreamID, ssf.PollRequest{Ack: keys(got.Sets), ReturnImmediately: true})
	if len(acked.Sets) != 0 {
		t.Fatalf("acknowledged SETs handed out again: %v", keys(acked.Sets))
	}
}

// TestPollLong: a poll without returnImmediately waits for the next event
// and answers it (how soon is BenchmarkPropagation's).
func TestPollLong(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	bearer := f.token(t, f.siem, audience)
	c := f.create(t, bearer, pollStream)
	done := make(chan ssf.PollResponse, 1)
	go func() { done <- f.poll(t, bearer, c.StreamID, ssf.PollRequest{}) }()
	jti := f.revokeToken(t, f.other, "revoked by its holder")
	select {
	case r := <-done:
		if len(r.Sets) != 1 || !strings.Contains(string(mustJSON(claimsOf(t, firstOf(r.Sets))["sub_id"])), jti) {
			t.Fatalf("long poll: %v", r.Sets)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("long poll did not answer")
	}
}

// TestPollSurvivesRestart: what a stream has not acknowledged is handed
// out again by a restarted transmitter (or another replica) on the same
// database, and what it acknowledged is not.
func TestPollSurvivesRestart(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	bearer := f.token(t, f.siem, audience)
	c := f.create(t, bearer, pollStream)
	a, b := f.revokeToken(t, f.other, "one"), f.revokeToken(t, f.other, "two")
	one := 1
	first := f.poll(t, bearer, c.StreamID, ssf.PollRequest{MaxEvents: &one, ReturnImmediately: true})
	if len(first.Sets) != 1 || !first.MoreAvailable || !strings.Contains(string(mustJSON(claimsOf(t, firstOf(first.Sets)))), a) {
		t.Fatalf("first poll: %v, more %v", keys(first.Sets), first.MoreAvailable)
	}
	f.poll(t, bearer, c.StreamID, ssf.PollRequest{Ack: keys(first.Sets), MaxEvents: new(int)})

	f.stop()
	restarted, _ := f.start(t, f.cfg) // a new process on the same store
	r, err := restarted.Poll(t.Context(), bearer, nil, c.StreamID, ssf.PollRequest{ReturnImmediately: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Sets) != 1 || !strings.Contains(string(mustJSON(claimsOf(t, firstOf(r.Sets)))), b) {
		t.Fatalf("after restart: %v, want only the unacknowledged %s", r.Sets, b)
	}
}

// TestVerification: a verification request is delivered as an SSF
// verification event with the receiver's state, once acknowledged no more.
func TestVerification(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	bearer := f.token(t, f.siem, audience)
	c := f.create(t, bearer, pollStream)
	if status, body := f.call(t, http.MethodPost, ssf.PathVerify, bearer, map[string]string{"stream_id": c.StreamID, "state": "abc"}); status != http.StatusNoContent {
		t.Fatalf("verify: %d %s", status, body)
	}
	r := f.poll(t, bearer, c.StreamID, ssf.PollRequest{ReturnImmediately: true})
	s := f.verifySET(t, firstOf(r.Sets))
	ev, _ := json.Marshal(s.claims["events"])
	sub, _ := json.Marshal(s.claims["sub_id"])
	if len(r.Sets) != 1 || string(ev) != `{"`+ssf.EventVerification+`":{"state":"abc"}}` || string(sub) != `{"format":"opaque","id":"`+c.StreamID+`"}` {
		t.Fatalf("verification SET: events %s, sub_id %s (%d SETs)", ev, sub, len(r.Sets))
	}
	if r := f.poll(t, bearer, c.StreamID, ssf.PollRequest{Ack: keys(r.Sets), ReturnImmediately: true}); len(r.Sets) != 0 {
		t.Fatalf("acknowledged verification handed out again: %v", keys(r.Sets))
	}
}

// TestEventsRequested: a stream asking for credential-change only gets no
// session-revoked, and the skipped events do not hold its cursor back.
func TestEventsRequested(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	bearer := f.token(t, f.siem, audience)
	req := pollStream
	req.EventsRequested = []string{ssf.EventCredentialChange, "https://example.com/unknown"}
	c := f.create(t, bearer, req)
	if !slices.Equal(c.EventsDelivered, []string{ssf.EventCredentialChange}) {
		t.Fatalf("events_delivered = %v", c.EventsDelivered)
	}
	f.revokeToken(t, f.other, "x")
	victim := f.env.Workload(t, "victim")
	f.env.RevokeCertificate(t, victim)
	r := f.poll(t, bearer, c.StreamID, ssf.PollRequest{ReturnImmediately: true})
	if len(r.Sets) != 1 || !strings.Contains(string(mustJSON(claimsOf(t, firstOf(r.Sets)))), ssf.EventCredentialChange) {
		t.Fatalf("SETs %v, want the credential change only", r.Sets)
	}
	f.poll(t, bearer, c.StreamID, ssf.PollRequest{Ack: keys(r.Sets), MaxEvents: new(int)})
	st, err := f.env.Store.Stream(t.Context(), c.StreamID)
	if err != nil || len(st.Acked) != 0 || st.Cursor != st.Delivered {
		t.Fatalf("stream position %+v, %v: want the cursor at the last event", st, err)
	}
}

func toStrings(v any) []string {
	var out []string
	l, _ := v.([]any)
	for _, s := range l {
		str, _ := s.(string)
		out = append(out, str)
	}
	return out
}

func keys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func sameKeys(a, b map[string]string) bool { return slices.Equal(keys(a), keys(b)) }

func firstOf(m map[string]string) string {
	for _, v := range m {
		return v
	}
	return ""
}

// subjectsOf is the sub_id of each SET in sets, as JSON.
func subjectsOf(t *testing.T, sets map[string]string) []string {
	t.Helper()
	var subjects []string
	for _, raw := range sets {
		subjects = append(subjects, string(mustJSON(claimsOf(t, raw)["sub_id"])))
	}
	return subjects
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}
