package ssf_test

import (
	"errors"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/internal/ssf"
	"github.com/sigil-dev/sigil/internal/store/backend"
	"github.com/sigil-dev/sigil/internal/tokens/tokenstest"
	"github.com/sigil-dev/sigil/testenv"
)

// TestReplicas: two transmitters on one PostgreSQL database, each on its
// own store handle (two replicas). A stream created on A is polled and
// acknowledged on B and then has nothing more on A; a push stream is
// pushed by one replica at a time, each SET once, and still once each
// after the first replica stops.
func TestReplicas(t *testing.T) {
	t.Parallel()
	dsn := testenv.PostgresDB(t)
	f := newFixtureOn(t, tokenstest.NewOn(t, dsn))
	stB, err := backend.Open(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stB.Close() })
	cfgB := f.cfg
	cfgB.Store = stB
	b, _ := f.start(t, cfgB)
	bearer := f.token(t, f.siem, audience)

	c := f.create(t, bearer, pollStream)
	jti := f.revokeToken(t, f.other, "x")
	got, err := b.Poll(t.Context(), bearer, nil, c.StreamID, ssf.PollRequest{ReturnImmediately: true})
	if err != nil || len(got.Sets) != 1 || !slices.Contains(keys(got.Sets), keys(got.Sets)[0]) {
		t.Fatalf("poll on B of a stream created on A: %v, %v", keys(got.Sets), err)
	}
	if sub := claimsOf(t, firstOf(got.Sets))["sub_id"].(map[string]any); sub["jti"] != jti {
		t.Fatalf("SET on B for %v, want %s", sub, jti)
	}
	if _, err := b.Poll(t.Context(), bearer, nil, c.StreamID, ssf.PollRequest{Ack: keys(got.Sets), MaxEvents: new(int)}); err != nil {
		t.Fatal(err)
	}
	if r := f.poll(t, bearer, c.StreamID, ssf.PollRequest{ReturnImmediately: true}); len(r.Sets) != 0 {
		t.Fatalf("poll on A after B acknowledged: %v", keys(r.Sets))
	}

	pushStream := f.create(t, bearer, ssf.StreamConfig{Delivery: ssf.Delivery{Method: ssf.MethodPush, EndpointURL: f.push.srv.URL + "/events"}})
	var want []string
	for range 5 {
		want = append(want, f.revokeToken(t, f.other, "x"))
	}
	testenv.WaitFor(t, 10*time.Second, "five SETs pushed and recorded as taken", func() bool {
		s, err := f.env.Store.Stream(t.Context(), pushStream.StreamID)
		head, _ := f.env.Store.LatestRevocationSeq(t.Context())
		return len(f.push.got()) >= 5 && err == nil && s.Cursor == head
	})
	f.stop() // A: the pusher or not, B goes on (a SET in flight as a pusher stops may be posted twice: receivers deduplicate by jti)
	for range 3 {
		want = append(want, f.revokeToken(t, f.other, "x"))
	}
	testenv.WaitFor(t, 15*time.Second, "eight SETs pushed", func() bool { return len(f.push.got()) >= 8 })
	var pushed []string
	for _, raw := range f.push.got() {
		pushed = append(pushed, claimsOf(t, raw)["sub_id"].(map[string]any)["jti"].(string))
	}
	if !slices.Equal(pushed, want) {
		t.Errorf("pushed %v, want each of %v once, in order", pushed, want)
	}
}

// TestReplicasStreamLimit: a receiver creating streams on two replicas at
// once gets at most StreamsPerReceiver of them; every other creation is
// 409 too_many_streams.
func TestReplicasStreamLimit(t *testing.T) {
	t.Parallel()
	dsn := testenv.PostgresDB(t)
	f := newFixtureOn(t, tokenstest.NewOn(t, dsn))
	stB, err := backend.Open(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stB.Close() })
	cfgB := f.cfg
	cfgB.Store = stB
	b, _ := f.start(t, cfgB)
	bearer := f.token(t, f.siem, audience)

	const tries = 3 * ssf.DefaultStreamsPerReceiver
	start := make(chan struct{})
	errs := make(chan error, tries)
	var wg sync.WaitGroup
	for i := range tries {
		tx := []*ssf.Transmitter{f.tx, b}[i%2]
		wg.Go(func() {
			<-start
			_, err := tx.CreateStream(t.Context(), bearer, nil, pollStream)
			errs <- err
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	created := 0
	for err := range errs {
		var e *ssf.Error
		switch {
		case err == nil:
			created++
		case errors.As(err, &e) && e.Status == http.StatusConflict && e.Code == "too_many_streams":
		default:
			t.Errorf("CreateStream: %v, want a stream or 409 too_many_streams", err)
		}
	}
	all, err := f.env.Store.Streams(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if created != ssf.DefaultStreamsPerReceiver || len(all) != ssf.DefaultStreamsPerReceiver {
		t.Errorf("%d creations succeeded, %d streams stored; want %d", created, len(all), ssf.DefaultStreamsPerReceiver)
	}
}
