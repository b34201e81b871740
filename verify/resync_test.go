package verify

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"

	"github.com/sigil-dev/sigil/testenv"
)

// lineageFeed is a revocation feed whose database is restored between
// two connections of the verifier: the first stream, of epoch "one",
// revokes a token as event 5 and ends; on the second, resuming after
// "one.5", the restored server answers as second does; from "0" it
// serves its new lineage, whose event 1 revokes another token.
type lineageFeed struct {
	first, next string // SETs
	second      func(w http.ResponseWriter)
	newEpoch    string

	mu      sync.Mutex
	resumes []string
}

func (f *lineageFeed) serve(w http.ResponseWriter, r *http.Request) {
	last := r.Header.Get("Last-Event-ID")
	f.mu.Lock()
	f.resumes = append(f.resumes, last)
	n := len(f.resumes)
	f.mu.Unlock()
	switch {
	case n == 1:
		w.Header().Set(feedHeadHeader, "one.5")
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprintf(w, "id: one.5\ndata: %s\n\n", f.first)
	case last == "0":
		w.Header().Set(feedHeadHeader, f.newEpoch+".1")
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprintf(w, "id: %s.1\ndata: %s\n\n", f.newEpoch, f.next)
		http.NewResponseController(w).Flush()
		<-r.Context().Done()
	default:
		f.second(w)
	}
}

func (f *lineageFeed) requests() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.resumes)
}

// TestRevocationFeedResyncs is the attack of issue 11 §2 on a verifier:
// the server's database is restored, so its feed numbers events again
// from where the copy stood. A verifier resuming after the event it saw
// last must read the new lineage from its start rather than skip the
// events whose numbers it has seen: whether the server refuses the resume
// point (409), names a head of another epoch, or a head behind it.
func TestRevocationFeedResyncs(t *testing.T) {
	stream := func(head string) func(w http.ResponseWriter) {
		return func(w http.ResponseWriter) {
			w.Header().Set(feedHeadHeader, head)
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprint(w, ": nothing after your resume point\n\n")
		}
	}
	for _, tc := range []struct {
		name     string
		newEpoch string
		second   func(w http.ResponseWriter)
	}{
		{"refused with 409", "two", func(w http.ResponseWriter) { http.Error(w, `{"error":"invalid_request"}`, http.StatusConflict) }},
		{"head of another epoch", "two", stream("two.1")},
		{"head behind, same epoch", "one", stream("one.1")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			before, after := e.token(t, e.mint, e.certA), e.token(t, e.mint, e.certA)
			f := &lineageFeed{first: signSET(t, e.key, issuer, jtiOf(t, before), 5), next: signSET(t, e.key, issuer, jtiOf(t, after), 1),
				second: tc.second, newEpoch: tc.newEpoch}
			srv := httptest.NewServer(http.HandlerFunc(f.serve))
			t.Cleanup(srv.Close)
			cfg := e.config(t)
			cfg.Revocation.FeedURL = srv.URL
			v := e.verifier(t, cfg)
			testenv.WaitFor(t, revocationWait, "the revocation in the restored server's new lineage", func() bool {
				_, err := v.Verify(t.Context(), after, e.certA)
				return errors.Is(err, errRevoked)
			})
			if _, err := v.Verify(t.Context(), before, e.certA); !errors.Is(err, errRevoked) {
				t.Errorf("the revocation learned before the restore was forgotten: %v", err)
			}
			if got := f.requests(); len(got) < 3 || !slices.Equal(got[:3], []string{"0", "one.5", "0"}) {
				t.Errorf("Last-Event-IDs %v, want 0, one.5, then 0 (resynchronised)", got)
			}
		})
	}
}

// FuzzFeedIDs: the feed ids a server sends never make the client resume
// off the feed it follows: an id follows another only within one epoch
// and after it, and a resume point is on a feed only at or before its
// head, in its epoch, or at the start.
func FuzzFeedIDs(f *testing.F) {
	for _, seed := range [][2]string{{"0", "a.1"}, {"a.1", "a.2"}, {"a.5", "a.1"}, {"a.5", "b.6"}, {"1", "2"}, {"a.1", "a."}, {"", "x"}} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, last, id string) {
		le, ls, lok := eventID(last)
		ie, is, iok := eventID(id)
		if follows(last, id) && last != "0" && lok && (!iok || ie != le || is <= ls) {
			t.Fatalf("follows(%q, %q) across epochs or backwards", last, id)
		}
		if onFeed(last, id) && id != "" && last != "0" && (!lok || !iok || le != ie || ls > is) {
			t.Fatalf("onFeed(%q, head %q) off the feed", last, id)
		}
	})
}
