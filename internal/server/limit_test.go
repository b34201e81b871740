package server

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sigil-dev/sigil/internal/tokens"
	"github.com/sigil-dev/sigil/internal/tokens/tokenstest"
	"github.com/sigil-dev/sigil/testenv"
)

// Attack (issue 11, finding 4): one enrolled workload opens revocation
// feed streams until the server has none left for anyone else. It gets
// its share and then 429 with Retry-After, with a second certificate of
// the same identity too; other workloads still subscribe and receive
// revocations; a full server answers 503 with Retry-After; a closed
// stream frees its place.
func TestFeedStreamLimits(t *testing.T) {
	t.Parallel()
	e := tokenstest.New(t, func(c *tokens.Config) { c.MaxSubscribers = 6 })
	o := serve(t, e, e.Service, func(s *Server) { s.FeedStreams, s.FeedStreamsPerIdentity = 6, 2 })
	greedy := o.client(o.Workload(t, "greedy"))
	var held []*stream
	for range 8 {
		s := o.openStream(t, greedy)
		if s.status == http.StatusOK {
			held = append(held, s)
			continue
		}
		s.refused(t, http.StatusTooManyRequests)
	}
	if len(held) != 2 {
		t.Fatalf("the greedy workload holds %d streams, want 2", len(held))
	}
	o.openStream(t, o.client(o.Workload(t, "greedy"))).refused(t, http.StatusTooManyRequests)

	rs, a := o.Workload(t, "rs"), o.Workload(t, "a")
	feed := o.subscribe(t, o.client(rs), "")
	tok := o.token(t, o.client(a), ccForm(rs.ID)).str("access_token")
	if r := o.post(t, o.client(a), tokens.PathRevoke, url.Values{"token": {tok}}); r.status != http.StatusOK {
		t.Fatalf("revoke: %d %s", r.status, r.raw)
	}
	if got := o.setJTI(t, feed.next(t).data); got != jtiOf(t, tok) {
		t.Errorf("the other workload's feed revoked %s, want %s", got, jtiOf(t, tok))
	}

	for _, n := range []string{"b", "c", "d"} { // 2 + 1 + 3: the server is full
		if s := o.openStream(t, o.client(o.Workload(t, n))); s.status != http.StatusOK {
			t.Fatalf("stream of %s: %d %s", n, s.status, s.body)
		}
	}
	late := o.client(o.Workload(t, "late"))
	o.openStream(t, late).refused(t, http.StatusServiceUnavailable)
	if n := counter(t, o.registry, "sigil_revocation_feed_refused_total"); n != 8 {
		t.Errorf("sigil_revocation_feed_refused_total = %v, want 8", n)
	}
	held[0].cancel()
	testenv.WaitFor(t, 5*time.Second, "the closed stream to free its place", func() bool {
		return gauge(t, o.registry, "sigil_revocation_feed_streams") == 5
	})
	if s := o.openStream(t, late); s.status != http.StatusOK {
		t.Errorf("stream after one closed: %d %s", s.status, s.body)
	}
}

// stream is an answer of the revocation feed: open (status 200) until
// cancel, or a refusal.
type stream struct {
	status int
	header http.Header
	body   string
	cancel context.CancelFunc
}

func (o *oauthServer) openStream(t *testing.T, c *http.Client) *stream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, o.url+tokens.PathRevocations, nil)
	c.Timeout = 0
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	s := &stream{status: resp.StatusCode, header: resp.Header, cancel: cancel}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		s.body = string(b)
	}
	return s
}

// refused checks that s is a refusal with status, Retry-After and the
// OAuth error temporarily_unavailable.
func (s *stream) refused(t *testing.T, status int) {
	t.Helper()
	if s.status != status || s.header.Get("Retry-After") == "" {
		t.Fatalf("stream: %d Retry-After %q %s, want %d with Retry-After", s.status, s.header.Get("Retry-After"), s.body, status)
	}
	a := answer{body: map[string]any{}}
	decode(t, []byte(s.body), &a.body)
	if a.str("error") != "temporarily_unavailable" || a.str("error_description") == "" {
		t.Errorf("refusal body %s", s.body)
	}
}

// gauge returns the value of the gauge name in reg.
func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no gauge %s", name)
	return 0
}
