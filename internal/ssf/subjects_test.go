package ssf_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/internal/ssf"
	"github.com/sigil-dev/sigil/internal/tokens"
	"github.com/sigil-dev/sigil/internal/tokens/tokenstest"
)

// TestSubjects: a receiver removes subjects from its stream (SSF 1.0
// §8.1.3.3) and hears no more of their events — a workload's certificate
// revocations by its SPIFFE ID, a token's by its jwt_id — while every other
// subject's still reach it; a subject added back (§8.1.3.2) is heard again.
func TestSubjects(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	siem := f.token(t, f.siem, audience)
	c := f.create(t, siem, pollStream)
	victim := f.env.Workload(t, "victim")
	muted, heard, readded := f.issue(t), f.issue(t), f.issue(t)

	f.subjects(t, siem, ssf.PathRemoveSubject, c.StreamID, map[string]string{"format": "uri", "uri": victim.ID}, http.StatusNoContent)
	for _, jti := range []string{muted, readded} {
		f.subjects(t, siem, ssf.PathRemoveSubject, c.StreamID, jwtID(jti), http.StatusNoContent)
	}
	f.subjects(t, siem, ssf.PathRemoveSubject, c.StreamID, jwtID(muted), http.StatusNoContent) // again: no change
	f.subjects(t, siem, ssf.PathAddSubject, c.StreamID, jwtID(readded), http.StatusOK)
	f.subjects(t, siem, ssf.PathAddSubject, c.StreamID, jwtID(heard), http.StatusOK) // never removed: no change

	f.env.RevokeCertificate(t, victim)
	for _, jti := range []string{muted, heard, readded} {
		if _, err := f.env.Store.RevokeToken(t.Context(), jti, "revoked by its holder", time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	r := f.poll(t, siem, c.StreamID, ssf.PollRequest{ReturnImmediately: true})
	got := subjectsOf(t, r.Sets)
	if len(got) != 2 || !slices.ContainsFunc(got, contains(heard)) || !slices.ContainsFunc(got, contains(readded)) {
		t.Fatalf("delivered the subjects %v, want the tokens %s and %s alone", got, heard, readded)
	}
	// the muted events count as done: acknowledging what was delivered
	// leaves nothing
	f.poll(t, siem, c.StreamID, ssf.PollRequest{ReturnImmediately: true, Ack: keys(r.Sets), MaxEvents: ptr(0)})
	if r := f.poll(t, siem, c.StreamID, ssf.PollRequest{ReturnImmediately: true}); len(r.Sets) != 0 {
		t.Fatalf("after the acknowledgement: %d SETs", len(r.Sets))
	}
}

// TestSubjectsComplex: a complex subject covers the certificate events
// whose subject has every member it names, the same: one naming a
// workload alone covers its certificate's revocation, one naming the
// workload and another device covers none.
func TestSubjectsComplex(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	siem := f.token(t, f.siem, audience)
	c := f.create(t, siem, pollStream)
	muted, heard := f.env.Workload(t, "muted"), f.env.Workload(t, "heard")
	user := func(w *tokenstest.Workload) map[string]string { return map[string]string{"format": "uri", "uri": w.ID} }
	f.subjects(t, siem, ssf.PathRemoveSubject, c.StreamID, map[string]any{"format": "complex", "user": user(muted)}, http.StatusNoContent)
	f.subjects(t, siem, ssf.PathRemoveSubject, c.StreamID, map[string]any{"format": "complex", "user": user(heard),
		"device": map[string]string{"format": "opaque", "id": "another-device"}}, http.StatusNoContent)
	f.env.RevokeCertificate(t, muted)
	f.env.RevokeCertificate(t, heard)
	r := f.poll(t, siem, c.StreamID, ssf.PollRequest{ReturnImmediately: true})
	got := subjectsOf(t, r.Sets)
	if len(got) != 1 || !strings.Contains(got[0], heard.ID) {
		t.Fatalf("delivered the subjects %v, want %s's certificate alone", got, heard.ID)
	}
}

// TestSubjectsRefused: a subject request is refused, naming why, when it
// names no stream, another receiver's stream, a subject that is not a
// supported RFC 9493 identifier, or holds another field; and a stream
// holds a bounded number of removed subjects.
func TestSubjectsRefused(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	siem, other := f.token(t, f.siem, audience), f.token(t, f.other, audience)
	c := f.create(t, siem, pollStream)
	uri := map[string]string{"format": "uri", "uri": "spiffe://sigil.test/workload/x"}
	for _, tc := range []struct {
		name, bearer string
		body         any
		status       int
		says         string
	}{
		{"no stream", siem, map[string]any{"subject": uri}, http.StatusBadRequest, "stream_id is required"},
		{"no subject", siem, map[string]any{"stream_id": c.StreamID}, http.StatusBadRequest, "subject is required"},
		{"another's stream", other, map[string]any{"stream_id": c.StreamID, "subject": uri}, http.StatusNotFound, "no such stream"},
		{"no bearer", "", map[string]any{"stream_id": c.StreamID, "subject": uri}, http.StatusUnauthorized, "invalid_token"},
		{"unknown format", siem, map[string]any{"stream_id": c.StreamID, "subject": map[string]string{"format": "x", "x": "y"}}, http.StatusBadRequest, `format "x" is not supported`},
		{"missing member", siem, map[string]any{"stream_id": c.StreamID, "subject": map[string]string{"format": "iss_sub", "iss": "i"}}, http.StatusBadRequest, `needs "sub"`},
		{"extra member", siem, map[string]any{"stream_id": c.StreamID, "subject": map[string]string{"format": "uri", "uri": "u", "x": "y"}}, http.StatusBadRequest, "no members but format, uri"},
		{"not an object", siem, map[string]any{"stream_id": c.StreamID, "subject": "spiffe://x"}, http.StatusBadRequest, "JSON object"},
		{"empty complex", siem, map[string]any{"stream_id": c.StreamID, "subject": map[string]string{"format": "complex"}}, http.StatusBadRequest, "at least one member"},
		{"complex member", siem, map[string]any{"stream_id": c.StreamID, "subject": map[string]any{"format": "complex", "owner": uri}}, http.StatusBadRequest, `no member "owner"`},
		{"long member", siem, map[string]any{"stream_id": c.StreamID, "subject": map[string]string{"format": "opaque", "id": strings.Repeat("x", 1025)}}, http.StatusBadRequest, "longer than 1024"},
		{"another field", siem, map[string]any{"stream_id": c.StreamID, "subject": uri, "note": "x"}, http.StatusBadRequest, "unknown field"},
	} {
		for _, path := range []string{ssf.PathAddSubject, ssf.PathRemoveSubject} {
			status, body := f.call(t, http.MethodPost, path, tc.bearer, tc.body)
			var e map[string]string
			_ = json.Unmarshal(body, &e)
			if status != tc.status || !strings.Contains(e["error"]+": "+e["error_description"], tc.says) {
				t.Errorf("%s, %s: %d %s; want %d naming %q", tc.name, path, status, body, tc.status, tc.says)
			}
		}
	}
	for i := range 256 {
		sub, _ := json.Marshal(map[string]string{"format": "opaque", "id": strings.Repeat("x", i+1)})
		if err := f.tx.RemoveSubject(t.Context(), siem, nil, ssf.SubjectRequest{StreamID: c.StreamID, Subject: sub}); err != nil {
			t.Fatalf("removed subject %d: %v", i+1, err)
		}
	}
	f.subjects(t, siem, ssf.PathRemoveSubject, c.StreamID, uri, http.StatusConflict)
	f.subjects(t, siem, ssf.PathAddSubject, c.StreamID, map[string]string{"format": "opaque", "id": "x"}, http.StatusOK)
	f.subjects(t, siem, ssf.PathRemoveSubject, c.StreamID, uri, http.StatusNoContent)
}

// issue issues a token (for the other receiver, to another workload) and
// returns its jti.
func (f *fixture) issue(t *testing.T) string {
	t.Helper()
	r, err := f.env.Service.Token(t.Context(), f.other.Cert, map[string][]string{"grant_type": {tokens.GrantClientCredentials}, "audience": {"spiffe://sigil.test/workload/db"}})
	if err != nil {
		t.Fatal(err)
	}
	return r.JTI
}

// subjects posts a subject request for stream id to path and wants status.
func (f *fixture) subjects(t *testing.T, bearer, path, id string, subject any, status int) {
	t.Helper()
	sub, _ := json.Marshal(subject)
	if got, body := f.call(t, http.MethodPost, path, bearer, ssf.SubjectRequest{StreamID: id, Subject: sub}); got != status {
		t.Fatalf("%s %s: %d %s, want %d", path, sub, got, body, status)
	}
}

func jwtID(jti string) map[string]string {
	return map[string]string{"format": "jwt_id", "iss": tokenstest.Issuer, "jti": jti}
}

func contains(s string) func(string) bool {
	return func(in string) bool { return strings.Contains(in, s) }
}
