package tokens_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/internal/store/backend"
	"github.com/sigil-dev/sigil/internal/tokens"
	"github.com/sigil-dev/sigil/internal/tokens/tokenstest"
	"github.com/sigil-dev/sigil/testenv"
)

// TestFeedNotifiedAcrossReplicas: two token services on one PostgreSQL
// database, each on its own store handle (as two replicas), polling once a
// minute only: a revocation through B reaches a subscriber of A within a
// second, every time (PostgreSQL's LISTEN/NOTIFY, store.FeedNotifier),
// and introspection on A calls it inactive at once,
// with the same sequence numbers a subscriber of B sees; a subscriber
// resuming on B from an event seen on A misses and repeats nothing.
func TestFeedNotifiedAcrossReplicas(t *testing.T) {
	ctx := t.Context()
	dsn := testenv.PostgresDB(t)
	slow := func(c *tokens.Config) { c.PollInterval = time.Minute }
	e := tokenstest.NewOn(t, dsn, slow)
	stB, err := backend.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stB.Close() })
	cfgB := e.Config
	cfgB.Store = stB
	b := e.Start(t, cfgB)
	client, aud, rs := e.Workload(t, "a"), e.Workload(t, "b"), e.Workload(t, "rs")
	sub, err := e.Service.Subscribe(ctx, rs.Cert, "")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	const n = 40
	var took []time.Duration
	var seqs []uint64
	var ids []string
	for range n {
		tok := mustToken(t, e.Service, client, cc(aud.ID))
		began := time.Now()
		if err := b.Revoke(ctx, client.Cert, tok.AccessToken); err != nil {
			t.Fatal(err)
		}
		ev := next(t, sub)
		took = append(took, time.Since(began))
		if jti := verifySET(t, e, ev); jti != tok.JTI {
			t.Fatalf("event for %s, want %s", jti, tok.JTI)
		}
		// Refused on A at once.
		in, err := e.Service.Introspect(ctx, client.Cert, tok.AccessToken)
		if err != nil || in.Active {
			t.Fatalf("introspection on A of a token revoked through B: %+v, %v; want inactive", in, err)
		}
		seqs = append(seqs, ev.Seq)
		ids = append(ids, ev.ID())
	}
	slices.Sort(took)
	p50, p99 := took[len(took)/2], took[len(took)*99/100]
	t.Logf("revocation through B to a subscriber of A, %d revocations: p50 %v, p99 %v, max %v", n, p50, p99, took[len(took)-1])
	if p99 >= time.Second {
		t.Errorf("p99 %v: want under a second", p99)
	}
	// Resume on B after the 10th event seen on A.
	resume, err := b.Subscribe(ctx, rs.Cert, ids[9])
	if err != nil {
		t.Fatal(err)
	}
	defer resume.Close()
	for _, want := range seqs[10:] {
		if ev := next(t, resume); ev.Seq != want {
			t.Fatalf("resumed on B after %d: got event %d, want %d", seqs[9], ev.Seq, want)
		}
	}
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if ev, err := resume.Next(short); err == nil {
		t.Fatalf("resumed on B: an event %d after the last one", ev.Seq)
	}
}
