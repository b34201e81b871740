package ssf_test

import (
	"context"
	"math"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/internal/ssf"
	"github.com/sigil-dev/sigil/internal/tokens"
	"github.com/sigil-dev/sigil/internal/tokens/tokenstest"
	"github.com/sigil-dev/sigil/testenv"
)

// BenchmarkPropagation: from a token's revocation (POST /oauth2/revoke's
// logic) to its SET in the hands of a receiver long-polling its stream,
// against the baseline of the same revocation reaching a subscriber of the
// SSE revocation feed (GET /v1/revocations), measured in the same run, on
// SQLite and on PostgreSQL: on both, the store wakes the feed and the
// transmitter as the revocation commits (store.FeedNotifier: in process on
// SQLite, LISTEN/NOTIFY on PostgreSQL). Metrics: p50/p99 of each in ms,
// and the ratio of the p50s.
func BenchmarkPropagation(b *testing.B) {
	b.Run("sqlite", func(b *testing.B) { propagation(b, tokenstest.New(b)) })
	b.Run("postgres", func(b *testing.B) { propagation(b, tokenstest.NewOn(b, testenv.PostgresDB(b))) })
}

func propagation(b *testing.B, env *tokenstest.Env) {
	siem, holder, rs := env.Workload(b, "siem"), env.Workload(b, "holder"), env.Workload(b, "rs")
	tx, err := ssf.New(ssf.Config{Issuer: tokenstest.Issuer, Audience: audience, Receivers: []ssf.Receiver{{ID: siem.ID}},
		Keys: env.Keys, Auth: env.Service, Store: env.Store, Log: tokenstest.Logger(b)})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = tx.Run(ctx) })
	defer func() { cancel(); wg.Wait() }()
	grant := func(w *tokenstest.Workload, aud string) *tokens.Response {
		r, err := env.Service.Token(ctx, w.Cert, map[string][]string{"grant_type": {tokens.GrantClientCredentials}, "audience": {aud}})
		if err != nil {
			b.Fatal(err)
		}
		return r
	}
	bearer := grant(siem, audience).AccessToken
	stream, err := tx.CreateStream(ctx, bearer, nil, ssf.StreamConfig{Delivery: ssf.Delivery{Method: ssf.MethodPoll}})
	if err != nil {
		b.Fatal(err)
	}
	sub, err := env.Service.Subscribe(ctx, rs.Cert, "")
	if err != nil {
		b.Fatal(err)
	}
	defer sub.Close()
	var viaSSF, viaFeed []time.Duration
	var acks []string
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		tok := grant(holder, rs.ID)
		polled := make(chan ssf.PollResponse, 1)
		go func() {
			r, err := tx.Poll(ctx, bearer, nil, stream.StreamID, ssf.PollRequest{Ack: acks})
			if err != nil {
				b.Error(err)
			}
			polled <- r
		}()
		b.StartTimer()
		began := time.Now()
		if err := env.Service.Revoke(ctx, holder.Cert, tok.AccessToken); err != nil {
			b.Fatal(err)
		}
		if _, err := sub.Next(ctx); err != nil {
			b.Fatal(err)
		}
		viaFeed = append(viaFeed, time.Since(began))
		r := <-polled
		viaSSF = append(viaSSF, time.Since(began))
		if len(r.Sets) != 1 {
			b.Fatalf("poll: %d SETs, want 1", len(r.Sets))
		}
		acks = keys(r.Sets)
	}
	b.StopTimer()
	ssfP50, feedP50 := report(b, "ssf-", viaSSF), report(b, "feed-", viaFeed)
	b.ReportMetric(ssfP50/feedP50, "ssf/feed-p50")
}

// report reports the nearest-rank p50 and p99 of ds in milliseconds and
// returns the p50.
func report(b *testing.B, prefix string, ds []time.Duration) float64 {
	ds = slices.Clone(ds)
	slices.Sort(ds)
	rank := func(p float64) float64 {
		i := int(math.Ceil(p*float64(len(ds)))) - 1
		return float64(ds[max(0, min(i, len(ds)-1))]) / float64(time.Millisecond)
	}
	b.ReportMetric(rank(0.50), prefix+"p50-ms")
	b.ReportMetric(rank(0.99), prefix+"p99-ms")
	return rank(0.50)
}
