package ssf_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/internal/ssf"
	"github.com/sigil-dev/sigil/internal/tokens"
	"github.com/sigil-dev/sigil/testenv"
)

// TestAttacks: what a party that is not a stream's receiver, or a
// receiver that asks for more than its own, gets.
func TestAttacks(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	siem, other := f.token(t, f.siem, audience), f.token(t, f.other, audience)
	c := f.create(t, siem, pollStream)
	pushed := f.create(t, siem, ssf.StreamConfig{Delivery: ssf.Delivery{Method: ssf.MethodPush, EndpointURL: f.push.srv.URL + "/events"}})
	wrongAud := f.token(t, f.siem, "spiffe://sigil.test/workload/db")
	revoked := f.token(t, f.siem, audience)
	if _, err := f.env.Store.RevokeToken(t.Context(), jtiOf(t, revoked), "revoked by its holder", time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := f.tx.Streams(t.Context(), siem, f.other.Cert, ""); !errors.Is(err, tokens.ErrInvalidToken) {
		t.Errorf("siem's token over other's certificate: %v, want ErrInvalidToken", err)
	}
	if _, err := f.tx.Streams(t.Context(), siem, f.siem.Cert, ""); err != nil {
		t.Errorf("siem's token over its own certificate: %v", err)
	}
	big := bytes.Repeat([]byte(" "), ssf.MaxBody+1)
	for _, tc := range []struct {
		name, method, path, bearer string
		body                       any
		status                     int
		code                       string
	}{
		{"no token", "GET", ssf.PathStream, "", nil, 401, "invalid_token"},
		{"a token for another audience", "GET", ssf.PathStream, wrongAud, nil, 401, "invalid_token"},
		{"a revoked token", "GET", ssf.PathStream, revoked, nil, 401, "invalid_token"},
		{"not a token", "GET", ssf.PathStream, "eyJhbGciOiJub25lIn0.e30.", nil, 401, "invalid_token"},
		{"a workload that is no receiver", "GET", ssf.PathStream, f.token(t, f.stranger, audience), nil, 403, "access_denied"},
		{"another's stream read", "GET", ssf.PathStream + "?stream_id=" + c.StreamID, other, nil, 404, "not_found"},
		{"another's stream deleted", "DELETE", ssf.PathStream + "?stream_id=" + c.StreamID, other, nil, 404, "not_found"},
		{"another's stream polled", "POST", ssf.PathPoll + c.StreamID, other, ssf.PollRequest{ReturnImmediately: true}, 404, "not_found"},
		{"another's stream verified", "POST", ssf.PathVerify, other, map[string]string{"stream_id": c.StreamID}, 404, "not_found"},
		{"push to a URL not configured", "POST", ssf.PathStream, siem, ssf.StreamConfig{Delivery: ssf.Delivery{Method: ssf.MethodPush, EndpointURL: "https://169.254.169.254/latest"}}, 400, "invalid_request"},
		{"push to another receiver's URL", "POST", ssf.PathStream, other, ssf.StreamConfig{Delivery: ssf.Delivery{Method: ssf.MethodPush, EndpointURL: f.push.srv.URL + "/events"}}, 400, "invalid_request"},
		{"push over http", "POST", ssf.PathStream, siem, ssf.StreamConfig{Delivery: ssf.Delivery{Method: ssf.MethodPush, EndpointURL: strings.Replace(f.push.srv.URL, "https", "http", 1) + "/events"}}, 400, "invalid_request"},
		{"poll endpoint chosen by the receiver", "POST", ssf.PathStream, siem, ssf.StreamConfig{Delivery: ssf.Delivery{Method: ssf.MethodPoll, EndpointURL: "https://evil.example/"}}, 400, "invalid_request"},
		{"unknown delivery method", "POST", ssf.PathStream, siem, ssf.StreamConfig{Delivery: ssf.Delivery{Method: "urn:example:sse"}}, 400, "invalid_request"},
		{"header injection", "POST", ssf.PathStream, siem, ssf.StreamConfig{Delivery: ssf.Delivery{Method: ssf.MethodPush, EndpointURL: f.push.srv.URL + "/events", AuthorizationHeader: "x\r\nHost: evil"}}, 400, "invalid_request"},
		{"oversized body", "POST", ssf.PathPoll + c.StreamID, siem, big, 413, "invalid_request"},
		{"not JSON", "POST", ssf.PathPoll + c.StreamID, siem, []byte(`{"maxEvents": "all"}`), 400, "invalid_request"},
		{"maxEvents too large", "POST", ssf.PathPoll + c.StreamID, siem, ssf.PollRequest{MaxEvents: ptr(ssf.MaxEvents + 1)}, 400, "invalid_request"},
		{"poll of a push stream", "POST", ssf.PathPoll + pushed.StreamID, siem, ssf.PollRequest{ReturnImmediately: true}, 400, "invalid_request"},
		{"delete without stream_id", "DELETE", ssf.PathStream, siem, nil, 400, "invalid_request"},
		{"status without a token", "GET", ssf.PathStatus + "?stream_id=" + c.StreamID, "", nil, 401, "invalid_token"},
		{"another's stream status read", "GET", ssf.PathStatus + "?stream_id=" + c.StreamID, other, nil, 404, "not_found"},
		{"another's stream paused", "POST", ssf.PathStatus, other, ssf.StreamStatus{StreamID: c.StreamID, Status: ssf.StatusPaused}, 404, "not_found"},
		{"another's stream disabled by a workload that is no receiver", "POST", ssf.PathStatus, f.token(t, f.stranger, audience), ssf.StreamStatus{StreamID: c.StreamID, Status: ssf.StatusDisabled}, 403, "access_denied"},
		{"another's stream updated", "PATCH", ssf.PathStream, other, map[string]any{"stream_id": c.StreamID, "description": "mine"}, 404, "not_found"},
		{"another's stream replaced", "PUT", ssf.PathStream, other, map[string]any{"stream_id": c.StreamID, "delivery": ssf.Delivery{Method: ssf.MethodPoll}}, 404, "not_found"},
		{"an unknown status", "POST", ssf.PathStatus, siem, ssf.StreamStatus{StreamID: c.StreamID, Status: "deleted"}, 400, "invalid_request"},
		{"a status reason on two lines", "POST", ssf.PathStatus, siem, ssf.StreamStatus{StreamID: c.StreamID, Status: ssf.StatusPaused, Reason: "a\r\nb"}, 400, "invalid_request"},
		{"a status reason too long", "POST", ssf.PathStatus, siem, ssf.StreamStatus{StreamID: c.StreamID, Status: ssf.StatusPaused, Reason: strings.Repeat("x", 1025)}, 400, "invalid_request"},
		{"an unknown field in a status", "POST", ssf.PathStatus, siem, map[string]string{"stream_id": c.StreamID, "status": ssf.StatusPaused, "subject": "x"}, 400, "invalid_request"},
		{"status without stream_id", "GET", ssf.PathStatus, siem, nil, 400, "invalid_request"},
		{"oversized update", "PATCH", ssf.PathStream, siem, big, 413, "invalid_request"},
		{"oversized status", "POST", ssf.PathStatus, siem, big, 413, "invalid_request"},
	} {
		status, body := f.call(t, tc.method, tc.path, tc.bearer, tc.body)
		if status != tc.status || !strings.Contains(string(body), `"error":"`+tc.code+`"`) {
			t.Errorf("%s: %d %s, want %d %s", tc.name, status, body, tc.status, tc.code)
		}
	}
	if status, body := f.call(t, "GET", ssf.PathStream+"?stream_id="+c.StreamID, siem, nil); status != 200 || !strings.Contains(string(body), c.StreamID) {
		t.Fatalf("siem's stream after the attacks: %d %s", status, body)
	}
	if status, body := f.call(t, "GET", ssf.PathStatus+"?stream_id="+c.StreamID, siem, nil); status != 200 || !strings.Contains(string(body), `"status":"enabled"`) {
		t.Fatalf("siem's stream status after the attacks: %d %s", status, body)
	}
	if status, body := f.call(t, "GET", ssf.PathStream, other, nil); status != 200 || strings.TrimSpace(string(body)) != "[]" {
		t.Errorf("other's stream list: %d %s, want none", status, body)
	}
}

// TestAckUnknown: acknowledging what is not one of the stream's SETs (a
// made-up jti, another stream's, an event not handed out yet) changes
// nothing: the stream's events are still handed out.
func TestAckUnknown(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	siem, other := f.token(t, f.siem, audience), f.token(t, f.other, audience)
	c := f.create(t, siem, pollStream)
	theirs := f.create(t, other, pollStream)
	f.revokeToken(t, f.other, "x")
	seen := f.poll(t, other, theirs.StreamID, ssf.PollRequest{ReturnImmediately: true})
	head, _ := f.env.Store.LatestRevocationSeq(t.Context())
	epoch, _ := f.env.Store.Epoch(t.Context())
	forged := []string{"nonsense", c.StreamID + "." + epoch + ".999", c.StreamID + ".verify.1", c.StreamID + "." + epoch + "." + itoa(head)}
	r := f.poll(t, siem, c.StreamID, ssf.PollRequest{Ack: append(forged, keys(seen.Sets)...), MaxEvents: new(int)})
	if len(r.Sets) != 0 {
		t.Fatalf("maxEvents 0 handed out %v", keys(r.Sets))
	}
	got := f.poll(t, siem, c.StreamID, ssf.PollRequest{ReturnImmediately: true})
	if want := c.StreamID + "." + epoch + "." + itoa(head); len(got.Sets) != 1 || got.Sets[want] == "" {
		t.Fatalf("after forged acks: %v, want %s", keys(got.Sets), want)
	}
	for range ssf.DefaultStreamsPerReceiver - 1 {
		f.create(t, siem, pollStream)
	}
	if status, body := f.call(t, "POST", ssf.PathStream, siem, pollStream); status != http.StatusConflict {
		t.Errorf("a stream beyond the receiver's share: %d %s, want 409", status, body)
	}
}

func ptr(n int) *int { return &n }

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }

// jtiOf is the jti of a JWT.
func jtiOf(t *testing.T, tok string) string {
	t.Helper()
	jti, _ := claimsOf(t, tok)["jti"].(string)
	return jti
}

// TestPollsBounded: a receiver cannot hold more long polls open than
// twice its streams allow.
func TestPollsBounded(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	cfg := f.cfg
	cfg.LongPoll = time.Hour // the polls below wait until canceled
	tx, _ := f.start(t, cfg)
	siem := f.token(t, f.siem, audience)
	c := f.create(t, siem, pollStream)
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	started := make(chan struct{}, 2*ssf.DefaultStreamsPerReceiver)
	for range 2 * ssf.DefaultStreamsPerReceiver {
		wg.Go(func() {
			started <- struct{}{}
			for { // until it holds a place: the probe below may have taken it for a moment
				_, err := tx.Poll(ctx, siem, nil, c.StreamID, ssf.PollRequest{})
				var e *ssf.Error
				if ctx.Err() != nil || !errors.As(err, &e) || e.Status != http.StatusTooManyRequests {
					if ctx.Err() == nil {
						t.Errorf("a long poll ended: %v", err)
					}
					return
				}
			}
		})
	}
	for range 2 * ssf.DefaultStreamsPerReceiver {
		<-started
	}
	var err error
	testenv.WaitFor(t, 30*time.Second, "a poll beyond the bound refused", func() bool {
		_, err = tx.Poll(t.Context(), siem, nil, c.StreamID, ssf.PollRequest{ReturnImmediately: true})
		return err != nil
	})
	var e *ssf.Error
	if !errors.As(err, &e) || e.Status != http.StatusTooManyRequests {
		t.Errorf("poll beyond the bound: %v, want 429", err)
	}
	cancel()
	wg.Wait()
	if _, err := tx.Poll(t.Context(), siem, nil, c.StreamID, ssf.PollRequest{ReturnImmediately: true}); err != nil {
		t.Errorf("poll once the others ended: %v", err)
	}
}
