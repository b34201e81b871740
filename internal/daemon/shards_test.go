package daemon_test

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/api"
	"github.com/sigil-dev/sigil/audit"
	"github.com/sigil-dev/sigil/internal/daemon"
	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/testenv"
)

// shardSource reads a shard from the store for audit.VerifyChain: its
// entries, and its latest stored checkpoint.
type shardSource struct{ store.ShardLog }

func (s shardSource) Checkpoint(ctx context.Context) ([]byte, error) {
	note, err := s.LatestCheckpoint(ctx)
	if err == nil && note == nil {
		err = audit.ErrNoCheckpoint
	}
	return note, err
}

// TestShardsAcrossReplicas: two replicas on one PostgreSQL database, the
// log sharded every second, entries appended through both handles all
// along. One replica rotates each period (the publisher's lease), both
// follow; they list the same sealed shards with the same seals; and the
// chain verifies from the stored entries: every shard linked to the
// previous one's final checkpoint, no entry after a seal.
func TestShardsAcrossReplicas(t *testing.T) {
	cfg, rs := newReplicas(t, 2)
	p, err := daemon.Init(t.Context(), cfg, rs[0].h, rs[0].st, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(p.Root)
	c := replicaConfig(cfg)
	c.Audit.ShardPeriod, c.Audit.ShortShardPeriods = time.Second, true
	first := serve(t, c, roots, p, rs[0].st)
	testenv.WaitFor(t, 10*time.Second, "a checkpoint to join", func() bool {
		note, err := rs[0].st.LatestCheckpoint(t.Context())
		return err == nil && note != nil
	})
	replicas := []*serving{first, serve(t, c, roots, p, rs[1].st)}

	ctx, stop := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	for _, r := range rs {
		wg.Go(func() {
			tick := time.NewTicker(5 * time.Millisecond) // a steady trickle of requests
			defer tick.Stop()
			for ; ctx.Err() == nil; <-tick.C {
				err := store.RecordAudit(ctx, r.st, audit.PolicyLoaded, audit.Policy{Version: "v"})
				if err != nil && ctx.Err() == nil {
					t.Errorf("append: %v", err)
					return
				}
			}
		})
	}
	lists := make([]api.LogShards, len(replicas))
	testenv.WaitFor(t, 30*time.Second, "four shards on both replicas", func() bool {
		for i, s := range replicas {
			status, body := s.get(t, api.PathLogShards)
			if status != http.StatusOK || json.Unmarshal([]byte(body), &lists[i]) != nil || len(lists[i].Shards) < 4 {
				return false
			}
		}
		return true
	})
	stop()
	wg.Wait()

	sealed := func(l api.LogShards) []api.LogShard { return l.Shards[:3] }
	a, b := sealed(lists[0]), sealed(lists[1])
	for i := range a {
		if a[i] != b[i] || !a[i].Sealed {
			t.Fatalf("sealed shard %d: replica A lists %+v, B %+v", i, a[i], b[i])
		}
	}

	st := rs[0].st
	shards, ends, err := store.Shards(t.Context(), st, a[0].Origin)
	if err != nil {
		t.Fatal(err)
	}
	var infos []audit.ShardInfo
	for i, sh := range shards[:len(shards)-1] { // the current one may still grow
		infos = append(infos, audit.ShardInfo{Name: sh.Name, Origin: sh.Origin, Sealed: ends[i] > 0})
	}
	open := func(name string) (audit.Source, error) {
		for i, sh := range shards {
			if sh.Name == name {
				return shardSource{store.ShardStorage(st, sh, ends[i])}, nil
			}
		}
		return nil, errors.New("no shard " + name)
	}
	v, err := audit.NewVerifier(a[0].Origin, p.AuditKey.Public())
	if err != nil {
		t.Fatal(err)
	}
	rep, err := audit.VerifyChain(t.Context(), infos, open, v, audit.ChainOptions{})
	if err != nil {
		t.Fatalf("VerifyChain over %d shards: %v", len(infos), err)
	}
	var entries uint64
	for _, r := range rep.Shards {
		entries += r.Size
	}
	t.Logf("%d shards verified as one chain, %d entries", len(rep.Shards), entries)
}
