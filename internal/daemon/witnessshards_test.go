package daemon_test

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/sigil-dev/sigil/api"
	"github.com/sigil-dev/sigil/audit"
	"github.com/sigil-dev/sigil/internal/config"
	"github.com/sigil-dev/sigil/internal/daemon"
	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/testenv"
)

// servedShard reads a shard's entries from the store and its checkpoint
// as the server publishes it (/log/shard/NAME/checkpoint, with the
// witnesses' cosignatures), for audit.VerifyChain.
type servedShard struct {
	store.ShardLog
	t    *testing.T
	s    *serving
	name string
}

func (s servedShard) Checkpoint(context.Context) ([]byte, error) {
	status, body := s.s.get(s.t, api.PathLogShard+s.name+"/checkpoint")
	if status != http.StatusOK {
		return nil, fmt.Errorf("checkpoint of shard %s: status %d: %s", s.name, status, body)
	}
	return []byte(body), nil
}

// TestWitnessedShards: a log sharded every second with two real
// witnesses: one configured with the shards' origins ahead of time
// (sigild audit witness-config), one with only the log's own origin. The
// first cosigns every shard's checkpoints, each sealed shard's final one
// too, served at /log/shard/NAME/checkpoint, and a chain verification
// requiring it passes. The second is refused each shard: the log goes on
// publishing, its lag grows, and a verification requiring it fails naming
// the first shard it did not cosign.
func TestWitnessedShards(t *testing.T) {
	cfg, rs := newReplicas(t, 1)
	p, err := daemon.Init(t.Context(), cfg, rs[0].h, rs[0].st, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	v, err := daemon.LogVerifier(t.Context(), cfg, rs[0].st, p.AuditKey.Public())
	if err != nil {
		t.Fatal(err)
	}
	logs := []testenv.WitnessLog{{Origin: v.Name(), PublicKey: v.WitnessKey()}}
	told := logs
	for i := range 60 { // the next minute's shards, as witness-config --next lists them
		origin, err := audit.ShardOrigin(v.Name(), audit.ShardName(time.Now().Add(time.Duration(i)*time.Second), time.Second))
		if err != nil {
			t.Fatal(err)
		}
		sv, err := v.Renamed(origin)
		if err != nil {
			t.Fatal(err)
		}
		told = append(told, testenv.WitnessLog{Origin: origin, PublicKey: sv.WitnessKey()})
	}
	wOne := testenv.StartWitness(t, "told.test", told...)
	wTwo := testenv.StartWitness(t, "untold.test", logs...)
	one, err := audit.ParseWitnessKey(wOne.Key)
	if err != nil {
		t.Fatal(err)
	}
	two, err := audit.ParseWitnessKey(wTwo.Key)
	if err != nil {
		t.Fatal(err)
	}
	c := replicaConfig(cfg)
	c.Audit.ShardPeriod, c.Audit.ShortShardPeriods = time.Second, true
	c.Audit.Witnesses = []config.Witness{{URL: wOne.URL, Key: wOne.Key}, {URL: wTwo.URL, Key: wTwo.Key}}
	c.Audit.WitnessTimeout = 2 * time.Second
	roots := x509.NewCertPool()
	roots.AddCert(p.Root)
	s := serve(t, c, roots, p, rs[0].st)

	var list api.LogShards
	sealed := func() []api.LogShard {
		var out []api.LogShard
		for _, sh := range list.Shards {
			if sh.Sealed {
				out = append(out, sh)
			}
		}
		return out
	}
	testenv.WaitFor(t, 20*time.Second, "three sealed shards with entries, each cosigned by the witness told of it", func() bool {
		record(t, rs[0].st, 2)
		status, body := s.get(t, api.PathLogShards)
		if status != http.StatusOK || json.Unmarshal([]byte(body), &list) != nil || len(sealed()) < 3 {
			return false
		}
		for _, sh := range sealed() {
			sv, err := v.Renamed(sh.Origin)
			if err != nil {
				t.Fatal(err)
			}
			_, served := s.get(t, api.PathLogShard+sh.Name+"/checkpoint")
			if _, err := audit.RequireCosignatures([]byte(served), sv, []note.Verifier{one}, 1); err != nil {
				return false
			}
		}
		return true
	})

	shards, ends, err := store.Shards(t.Context(), rs[0].st, v.Name())
	if err != nil {
		t.Fatal(err)
	}
	var infos []audit.ShardInfo
	for _, sh := range sealed() {
		infos = append(infos, audit.ShardInfo{Name: sh.Name, Origin: sh.Origin, Sealed: true})
	}
	open := func(name string) (audit.Source, error) {
		for i, sh := range shards {
			if sh.Name == name {
				return servedShard{store.ShardStorage(rs[0].st, sh, ends[i]), t, s, name}, nil
			}
		}
		return nil, errors.New("no shard " + name)
	}
	require := func(w note.Verifier) error {
		opts := audit.ChainOptions{VerifyOptions: audit.VerifyOptions{WitnessPolicy: audit.WitnessPolicy{Witnesses: []note.Verifier{w}, MinWitnesses: 1}}}
		_, err := audit.VerifyChain(t.Context(), infos, open, v, opts)
		return err
	}
	if err := require(one); err != nil {
		t.Fatalf("the chain of %d sealed shards, requiring the witness told of them: %v", len(infos), err)
	}
	firstUntold := infos[0].Name
	if firstUntold == audit.UnshardedName {
		firstUntold = infos[1].Name // under the log's own origin, which both know
	}
	err = require(two)
	if !errors.Is(err, audit.ErrTooFewCosignatures) || !strings.Contains(err.Error(), "shard "+firstUntold+":") {
		t.Fatalf("the chain requiring the witness not told of the shards: %v; want too few cosignatures on shard %s", err, firstUntold)
	}

	id := fmt.Sprintf("%s+%08x", two.Name(), two.KeyHash())
	lag := `sigil_audit_witness_lag_entries{witness="` + id + `"}`
	before := s.labelled(t, lag)
	if before == 0 {
		t.Fatal("the untold witness's lag is 0")
	}
	testenv.WaitFor(t, 10*time.Second, "the untold witness's lag to grow", func() bool {
		record(t, rs[0].st, 2)
		return s.labelled(t, lag) > before
	})
	// omniwitness answers 500, not the 404 of C2SP tlog-witness, to a
	// checkpoint of an origin it was not configured with: "other".
	if n := submissions(t, s, id, "refused") + submissions(t, s, id, "other"); n == 0 {
		t.Fatal("no submission to the untold witness counted refused or other")
	}
	shardLag := `sigil_audit_witness_shard_lag_entries{shard="` + firstUntold + `",witness="` + id + `"}`
	if n := s.labelled(t, shardLag); n == 0 {
		t.Fatalf("%s = 0, want the sealed shard's entries", shardLag)
	}
	// A shard lasts a second here: the live one may have begun since the
	// last append, with no checkpoint signed yet.
	testenv.WaitForNil(t, 10*time.Second, "the live checkpoint, under its shard's origin", func() error {
		record(t, rs[0].st, 1)
		_, served := s.get(t, api.PathLogCheckpoint)
		cp, err := audit.PeekCheckpoint([]byte(served))
		if err != nil || cp.Size == 0 || !strings.HasPrefix(cp.Origin, v.Name()+"/") {
			return fmt.Errorf("the live checkpoint: %+v, %v (served %q)", cp, err, served)
		}
		return nil
	})
}

// record appends n entries through st, not waiting for a checkpoint (a
// rotation may land in between).
func record(t *testing.T, st store.Store, n int) {
	t.Helper()
	for i := range n {
		if err := store.RecordAudit(t.Context(), st, audit.PolicyLoaded, audit.Policy{Version: fmt.Sprintf("test-%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
}
