package daemon

import (
	"cmp"
	"context"
	"crypto"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sigil-dev/sigil/audit"
	"github.com/sigil-dev/sigil/internal/config"
	"github.com/sigil-dev/sigil/internal/server"
	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/internal/witness"
)

// LogVerifier returns the verifier of the audit log's checkpoints: pub, the
// audit key, under the log's origin (what a witness is configured with,
// `sigild audit witness-key`). st is the log's store.
func LogVerifier(ctx context.Context, cfg *config.Config, st store.Store, pub crypto.PublicKey) (*audit.Verifier, error) {
	origin, err := AuditOrigin(ctx, cfg, st, pub, nil)
	if err != nil {
		return nil, err
	}
	return audit.NewVerifier(origin, pub)
}

// defaultWitnessTimeout bounds one submission when audit.witness_timeout
// is not set.
const defaultWitnessTimeout = 10 * time.Second

// openWitnesses sets up the Cosigner of l's checkpoints for the
// configured witnesses, sharing the log's lease (one replica submits), and
// the published view every replica serves; each shard's under its own
// origin when the log is or will be sharded.
func (d *Daemon) openWitnesses(l *liveLog, sharded bool, reg prometheus.Registerer) error {
	if len(d.cfg.Audit.Witnesses) == 0 {
		return nil
	}
	hc := &http.Client{Timeout: cmp.Or(d.cfg.Audit.WitnessTimeout, defaultWitnessTimeout)}
	var ws []*witness.Client
	for _, w := range d.cfg.Audit.Witnesses {
		c, err := witness.NewClient(w.URL, w.Key, hc)
		if err != nil {
			return err
		}
		ws = append(ws, c)
	}
	opts := []witness.Option{witness.WithLogger(d.log), witness.WithMetrics(reg)}
	if d.lease != nil {
		opts = append(opts, witness.WithLease(d.lease))
	}
	st := store.AuditStorage(d.store)
	d.published = witness.NewPublished(l, st)
	if sharded {
		shards := &witnessShards{d: d}
		opts = append(opts, witness.WithShards(shards))
		d.published = witness.NewShardedPublished(l, shards)
	}
	c, err := witness.New(l, st, d.checkpoints, ws, opts...)
	if err != nil {
		return err
	}
	d.cosigner = c
	return nil
}

// witnessShards finds the shards of the log for the witnesses, by origin:
// the current one from the live log, sealed ones from the store (kept,
// they never change).
type witnessShards struct {
	d *Daemon

	mu     sync.Mutex
	sealed map[string]witness.Shard // by origin
}

// ShardOf returns the shard with origin: the log's own origin while it is
// not sharded. A current shard is read from the store's list of shards
// once per new checkpoint's shard a witness's loop moves to, and for each
// published checkpoint (cached for PublishedTTL).
func (s *witnessShards) ShardOf(ctx context.Context, origin string) (witness.Shard, error) {
	d := s.d
	v, err := d.checkpoints.Renamed(origin)
	if err != nil {
		return witness.Shard{}, err
	}
	if cur := d.audit.Shard(); cur.Name == "" && origin == d.baseOrigin {
		st := store.AuditStorage(d.store)
		return witness.Shard{Key: v, Proofs: prover{st}, Store: st}, nil
	}
	s.mu.Lock()
	sh, ok := s.sealed[origin]
	s.mu.Unlock()
	if ok {
		return sh, nil
	}
	rows, ends, err := store.Shards(ctx, d.store, d.baseOrigin)
	if err != nil {
		return witness.Shard{}, err
	}
	for i, row := range rows {
		if row.Origin != origin {
			continue
		}
		view := store.ShardStorage(d.store, row, ends[i])
		sh := witness.Shard{Name: row.Name, Key: v, Proofs: prover{view}, Store: view}
		if i > 0 {
			sh.Previous = rows[i-1].Origin
		}
		if ends[i] == 0 {
			return sh, nil // current in the store, not yet on this replica
		}
		if sh.Final, err = finalCheckpoint(ctx, view, v); err != nil {
			return witness.Shard{}, err
		}
		s.mu.Lock()
		if s.sealed == nil {
			s.sealed = map[string]witness.Shard{}
		}
		s.sealed[origin] = sh
		s.mu.Unlock()
		return sh, nil
	}
	return witness.Shard{}, fmt.Errorf("audit: no shard of origin %q", origin)
}

// prover proves consistency within one shard's stored tree.
type prover struct{ r audit.LeafHashReader }

func (p prover) ConsistencyProof(ctx context.Context, m, n uint64) ([][]byte, error) {
	return audit.ConsistencyProof(ctx, p.r, m, n)
}

// auditLog is the log the API serves: with witnesses, its checkpoint
// carries their cosignatures.
func (d *Daemon) auditLog() server.AuditLog {
	if d.published == nil {
		return d.audit
	}
	return cosignedLog{d.audit, d.published}
}

// cosignedLog is the audit log with the published checkpoint.
type cosignedLog struct {
	*liveLog
	published *witness.Published
}

func (c cosignedLog) Checkpoint(ctx context.Context) ([]byte, error) {
	return c.published.Checkpoint(ctx)
}

var _ server.ShardLog = cosignedLog{}
