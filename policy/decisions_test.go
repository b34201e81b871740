package policy

import (
	"fmt"
	"path/filepath"
	"reflect"
	"testing"
)

const cacheDB = "spiffe://sigil.test/workload/db"

func cacheSubject(scopes []string, actors ...string) *Subject {
	return &Subject{Issuer: "https://idp.sigil.test", Sub: "alice", Scopes: scopes, ActChain: actors}
}

// key is r's decision cache key as a string.
func (r TokenRequest) key() (string, bool) {
	b, ok := r.appendKey(nil)
	return string(b), ok
}

// TestTokenRequestKey: requests that differ in anything have different
// keys, so the decision cache never answers for another request.
func TestTokenRequestKey(t *testing.T) {
	req := func() TokenRequest {
		return TokenRequest{Caller: devCaller(), Audience: cacheDB, Scopes: []string{"read"}, Subject: cacheSubject([]string{"read", "write"}, "a")}
	}
	base, ok := req().key()
	if again, _ := req().key(); !ok || again != base {
		t.Fatal("equal requests have different keys")
	}
	tests := []struct {
		name string
		edit func(r *TokenRequest)
	}{
		{"caller fact", func(r *TokenRequest) { r.Caller.Device.PCRs[7] = sha("other") }},
		{"caller event added", func(r *TokenRequest) { r.Caller.Device = debugDevice() }},
		{"audience", func(r *TokenRequest) { r.Audience += "x" }},
		{"scope", func(r *TokenRequest) { r.Scopes = []string{"write"} }},
		{"scope added", func(r *TokenRequest) { r.Scopes = append(r.Scopes, "write") }},
		{"scopes split otherwise", func(r *TokenRequest) { r.Scopes = []string{"re", "ad"} }},
		{"text moved from audience to scope", func(r *TokenRequest) {
			r.Audience, r.Scopes = r.Audience[:len(r.Audience)-1], []string{"bread"}
		}},
		{"no subject", func(r *TokenRequest) { r.Subject = nil }},
		{"subject issuer", func(r *TokenRequest) { r.Subject.Issuer += "x" }},
		{"subject sub", func(r *TokenRequest) { r.Subject.Sub = "mallory" }},
		{"text moved between subject fields", func(r *TokenRequest) {
			r.Subject.Issuer, r.Subject.Sub = r.Subject.Issuer+"a", "lice"
		}},
		{"subject scopes", func(r *TokenRequest) { r.Subject.Scopes = []string{"read"} }},
		{"subject scope moved to act chain", func(r *TokenRequest) {
			r.Subject.Scopes, r.Subject.ActChain = []string{"read"}, []string{"write", "a"}
		}},
		{"act chain longer", func(r *TokenRequest) { r.Subject.ActChain = append(r.Subject.ActChain, "b") }},
		{"act chain actor", func(r *TokenRequest) { r.Subject.ActChain = []string{"b"} }},
		{"act chain empty", func(r *TokenRequest) { r.Subject.ActChain = nil }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := req()
			tt.edit(&r)
			if key, ok := r.key(); !ok || key == base {
				t.Errorf("key %q, %v: want another key than the unedited request's", key, ok)
			}
		})
	}
}

// TestTokenRequestKeyCoversEveryField fails when TokenRequest or Subject
// gains a field: TokenRequest.appendKey must encode it too (and
// TestTokenRequestKey edit it), or the decision cache would answer for a
// request whose new fact differs.
func TestTokenRequestKeyCoversEveryField(t *testing.T) {
	for typ, covered := range map[reflect.Type]int{reflect.TypeFor[TokenRequest](): 4, reflect.TypeFor[Subject](): 4} {
		if n := typ.NumField(); n != covered {
			t.Errorf("%s has %d fields, TokenRequest.appendKey encodes %d: encode the new ones", typ.Name(), n, covered)
		}
	}
}

// TestDecisionCacheChangedFact attacks the decision cache: a caller whose
// device now measured debug firmware, a longer act chain, a wider scope,
// each asked right after the permitted request was cached, is decided on
// its own facts. Every answer, cached or not, equals a fresh evaluation.
func TestDecisionCacheChangedFact(t *testing.T) {
	s := mustLoad(t, "testdata/dev")
	onDebug := devCaller()
	onDebug.Device = debugDevice()
	rw := []string{"read", "write"}
	reqs := []struct {
		req     TokenRequest
		allowed bool
	}{
		{TokenRequest{Caller: devCaller(), Audience: cacheDB}, true},
		{TokenRequest{Caller: onDebug, Audience: cacheDB}, false},
		{TokenRequest{Caller: devCaller(), Audience: cacheDB, Scopes: []string{"read"}, Subject: cacheSubject(rw)}, true},
		{TokenRequest{Caller: devCaller(), Audience: cacheDB, Scopes: []string{"read"}, Subject: cacheSubject(rw, "a", "b")}, false},
		{TokenRequest{Caller: devCaller(), Audience: cacheDB, Scopes: rw, Subject: cacheSubject([]string{"read"})}, false},
		{TokenRequest{Caller: onDebug, Audience: cacheDB, Scopes: []string{"read"}, Subject: cacheSubject(rw)}, false},
	}
	for round := range 3 {
		for i, tt := range reqs {
			got, fresh := s.Decide(tt.req), s.decide(tt.req)
			if got.Allowed != tt.allowed {
				t.Errorf("round %d, request %d: %v, want allowed %v", round, i, got, tt.allowed)
			}
			if !reflect.DeepEqual(got, fresh) {
				t.Errorf("round %d, request %d: Decide = %#v, fresh evaluation %#v", round, i, got, fresh)
			}
		}
	}
	if n := s.decided.len(); n != len(reqs) {
		t.Errorf("%d decisions cached, want %d", n, len(reqs))
	}
}

// TestDecisionCacheNewPolicySet: a decision cached under one policy set is
// never the answer of the next one, the Engine's active set included.
func TestDecisionCacheNewPolicySet(t *testing.T) {
	dir := copyDir(t, "testdata/dev")
	e, err := NewEngine(t.Context(), dir, WithPollInterval(0))
	if err != nil {
		t.Fatal(err)
	}
	req := TokenRequest{Caller: devCaller(), Audience: cacheDB}
	for range 2 {
		if d := e.Decide(req); !d.Allowed {
			t.Fatalf("Decide = %v, want allowed", d)
		}
	}
	writeFile(t, filepath.Join(dir, "deny.cedar"), `@id("deny-db")
forbid (principal, action, resource == Sigil::Audience::"`+cacheDB+`");
`)
	if err := e.Reload(); err != nil {
		t.Fatal(err)
	}
	if d := e.Decide(req); d.Allowed || d.Version != e.Set().Version() {
		t.Errorf("after the new set: %v, want denied by set %s", d, e.Set().Version())
	}
}

// TestDecisionCacheBounded: a flood of distinct requests keeps the cache
// at its bound, and the latest are still decided correctly.
func TestDecisionCacheBounded(t *testing.T) {
	s := mustLoad(t, "testdata/dev")
	for i := range maxCachedDecisions + 10 {
		req := TokenRequest{Caller: devCaller(), Audience: fmt.Sprintf("spiffe://sigil.test/workload/w%d", i)}
		if d := s.Decide(req); !d.Allowed {
			t.Fatalf("request %d: %v, want allowed", i, d)
		}
	}
	if n := s.decided.len(); n != maxCachedDecisions {
		t.Errorf("%d decisions cached, want %d", n, maxCachedDecisions)
	}
}

// TestDecisionCacheCopies: a caller changing the decision it got does not
// change the cached one.
func TestDecisionCacheCopies(t *testing.T) {
	s := mustLoad(t, "testdata/dev")
	req := TokenRequest{Caller: devCaller(), Audience: cacheDB}
	d := s.Decide(req)
	d.PolicyIDs[0] = "changed"
	again := s.Decide(req)
	again.PolicyIDs[0] = "changed again"
	if d := s.Decide(req); !reflect.DeepEqual(d.PolicyIDs, []string{"dev-token-workloads"}) {
		t.Errorf("cached PolicyIDs = %q, want the original", d.PolicyIDs)
	}
}
