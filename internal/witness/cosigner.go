package witness

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sigil-dev/sigil/audit"
)

// Log is what the Cosigner reads of the audit log (audit.Log).
type Log interface {
	// WaitFor returns the latest signed checkpoint note once it covers at
	// least size entries.
	WaitFor(ctx context.Context, size uint64) ([]byte, error)
	// ConsistencyProof proves the tree of m entries a prefix of that of n.
	ConsistencyProof(ctx context.Context, m, n uint64) ([][]byte, error)
}

// Store keeps the cosignatures (internal/store's AuditLog).
type Store interface {
	AddCosignature(ctx context.Context, size uint64, witness string, line []byte) error
}

// ShardStore keeps a shard's cosignatures (internal/store's ShardLog).
type ShardStore interface {
	Store
	Cosignatures
}

// Prover proves a tree a prefix of a larger one (audit.Log).
type Prover interface {
	ConsistencyProof(ctx context.Context, m, n uint64) ([][]byte, error)
}

// Shards finds the shard of a log sharded by time that a checkpoint is of,
// by its origin (WithShards).
type Shards interface {
	ShardOf(ctx context.Context, origin string) (Shard, error)
}

// Shard is one shard of a log sharded by time, as the Cosigner submits
// its checkpoints: each shard is a log of its own to a witness, under its
// own origin, which the witness must be configured with.
type Shard struct {
	Name   string          // the shard's name, in metrics and log lines
	Key    *audit.Verifier // the log key under the shard's origin
	Proofs Prover          // consistency proofs within the shard
	Store  ShardStore      // where the shard's cosignatures are kept
	Final  []byte          // the sealed shard's final checkpoint; nil while current
	// Previous is the origin of the shard before it; "" for the first.
	Previous string
}

// maxSealsBack is how many sealed shards back from the current one a
// witness's loop submits the final checkpoints of when it moves to a new
// shard: those it skipped (a shard period shorter than a submission's
// delays), or, when it starts, those sealed just before.
const maxSealsBack = 4

// DefaultSealAttempts is how many times the Cosigner submits a sealed
// shard's final checkpoint to a witness (with the retry delays of
// WithRetry) before it gives up with a log line.
const DefaultSealAttempts = 12

// DefaultRetry is the Cosigner's first delay after a failed submission,
// doubled at each failure in a row up to MaxRetry.
const (
	DefaultRetry = time.Second
	MaxRetry     = time.Minute
)

// Cosigner submits the log's checkpoints to witnesses. Run does the work.
type Cosigner struct {
	log   Log
	store Store
	key   *audit.Verifier
	ws    []*Client
	o     options
	m     *metrics
}

// Option tunes New.
type Option func(*options)

type options struct {
	lease    audit.Lease
	shards   Shards
	seals    int
	retry    time.Duration
	logger   *slog.Logger
	registry prometheus.Registerer
}

// WithLease makes the Cosigner submit only while lease says this replica
// leads (the audit log's checkpoint lease): one replica talks to the
// witnesses. Without it, it always submits.
func WithLease(l audit.Lease) Option { return func(o *options) { o.lease = l } }

// WithShards makes the Cosigner follow a log sharded by time: each
// checkpoint is submitted under its shard's origin, from size 0 for a new
// shard, and when the log moves on to a new shard, the previous one's
// final checkpoint is submitted until cosigned, or given up after
// DefaultSealAttempts with a log line. The log's WaitFor must then return
// the next shard's first checkpoint when the log rotates.
func WithShards(s Shards) Option { return func(o *options) { o.shards = s } }

// WithRetry sets the first delay after a failure (default DefaultRetry),
// and how often a replica that does not lead asks again.
func WithRetry(d time.Duration) Option { return func(o *options) { o.retry = d } }

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithMetrics registers the Cosigner's collectors with r: per witness, the
// size it last cosigned, how many entries it lags behind the log's latest
// checkpoint, and submissions by result.
func WithMetrics(r prometheus.Registerer) Option { return func(o *options) { o.registry = r } }

// New returns a Cosigner of the checkpoints of log, signed by key, for the
// witnesses ws, storing their cosignatures in st.
func New(log Log, st Store, key *audit.Verifier, ws []*Client, opts ...Option) (*Cosigner, error) {
	if log == nil || st == nil || key == nil {
		return nil, errors.New("witness: new cosigner: nil log, store or key")
	}
	o := options{retry: DefaultRetry, logger: slog.Default(), seals: DefaultSealAttempts}
	for _, opt := range opts {
		opt(&o)
	}
	if o.retry <= 0 || o.logger == nil {
		return nil, errors.New("witness: new cosigner: WithRetry must be positive, WithLogger not nil")
	}
	m, err := newMetrics(o.registry, ws)
	if err != nil {
		return nil, err
	}
	return &Cosigner{log: log, store: st, key: key, ws: ws, o: o, m: m}, nil
}

// Run submits every new checkpoint to every witness until ctx ends, then
// returns nil. Each witness has its own loop: one that is down or refuses
// does not delay the others, and never the log.
func (c *Cosigner) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, w := range c.ws {
		wg.Go(func() { (&worker{c: c, w: w, wg: &wg, sh: c.unsharded()}).run(ctx) })
	}
	wg.Wait()
	return nil
}

// unsharded is the log as one shard: that of New's arguments.
func (c *Cosigner) unsharded() *shardState {
	return &shardState{Shard: Shard{Key: c.key, Proofs: c.log, Store: storeOnly{c.store}}, origin: c.key.Name()}
}

// storeOnly is a Store whose cosignatures the Cosigner does not read.
type storeOnly struct{ Store }

func (storeOnly) Cosignatures(context.Context, uint64) ([][]byte, error) {
	return nil, errors.New("witness: cosignatures not read here")
}

// shardState is what a worker knows of one shard at its witness.
type shardState struct {
	Shard
	origin   string
	known    uint64 // the witness's latest size for the shard, as far as known
	cosigned uint64 // the size of the last checkpoint it cosigned here
}

// PastWaiter is a sharded log's WaitFor: the latest checkpoint once it
// covers at least size entries of the shard with origin, or once it is of
// a later shard.
type PastWaiter interface {
	WaitPast(ctx context.Context, origin string, size uint64) ([]byte, error)
}

// worker submits to one witness.
type worker struct {
	c  *Cosigner
	w  *Client
	wg *sync.WaitGroup // the Cosigner's, for the seals' submissions
	sh *shardState     // the shard of the latest checkpoint
}

// wait returns the latest checkpoint once it is past the last one cosigned.
func (k *worker) wait(ctx context.Context) ([]byte, error) {
	if pw, ok := k.c.log.(PastWaiter); ok && k.c.o.shards != nil {
		return pw.WaitPast(ctx, k.sh.origin, k.sh.cosigned+1)
	}
	return k.c.log.WaitFor(ctx, k.sh.cosigned+1)
}

// follow moves the worker to the shard with origin, once the log has
// rotated to it, and has the final checkpoints of the shards sealed since
// the last one it submitted to cosigned meanwhile (the one before it, when
// it has submitted to none yet).
func (k *worker) follow(ctx context.Context, origin string) error {
	if k.c.o.shards == nil || origin == k.sh.origin {
		return nil
	}
	sh, err := k.c.o.shards.ShardOf(ctx, origin)
	if err != nil {
		return fmt.Errorf("shard of %s: %w", origin, err)
	}
	prev := k.sh
	k.sh = &shardState{Shard: sh, origin: origin}
	back := sh.Previous
	for range maxSealsBack {
		if back == "" {
			break
		}
		s := &shardState{origin: back}
		if back == prev.origin {
			s = prev // with what the witness is known to have seen of it
		}
		k.wg.Go(func() { k.seal(ctx, s) })
		if back == prev.origin {
			break
		}
		p, err := k.c.o.shards.ShardOf(ctx, back)
		if err != nil {
			break // the seal's loop says what failed
		}
		back = p.Previous
	}
	return nil
}

// seal has the witness cosign the final checkpoint of sealed shard s, the
// one this worker submitted to before the log rotated, retrying up to the
// Cosigner's limit.
func (k *worker) seal(ctx context.Context, s *shardState) {
	delay := k.c.o.retry
	var err error
	for attempt := 0; attempt < k.c.o.seals; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(delay):
			}
			delay = min(2*delay, MaxRetry)
		}
		err = k.submitSeal(ctx, s)
		if err == nil || ctx.Err() != nil {
			return
		}
		if !errors.Is(err, errFollowing) {
			k.c.o.logger.WarnContext(ctx, "witness: a sealed shard's final checkpoint not cosigned; retrying", "witness", k.w.ID(), "shard", s.origin, "attempt", attempt+1, "err", err)
		}
	}
	k.c.o.logger.ErrorContext(ctx, "witness: a sealed shard's final checkpoint was not cosigned; given up", "witness", k.w.ID(), "shard", s.origin, "attempts", k.c.o.seals, "err", err)
}

// submitSeal submits s's final checkpoint once, if this replica leads.
func (k *worker) submitSeal(ctx context.Context, s *shardState) error {
	if s.Final == nil {
		sh, err := k.c.o.shards.ShardOf(ctx, s.origin)
		if err != nil {
			return fmt.Errorf("shard of %s: %w", s.origin, err)
		}
		if sh.Final == nil {
			return fmt.Errorf("shard %s: not sealed yet", s.origin)
		}
		s.Shard = sh
	}
	cp, err := audit.PeekCheckpoint(s.Final)
	if err != nil {
		return err
	}
	if cp.Size <= s.cosigned {
		k.c.m.shardCosigned(k.w, s.Name, true) // before it was sealed
		return nil
	}
	return k.round(ctx, s, s.Final, cp)
}

func (k *worker) run(ctx context.Context) {
	delay := k.c.o.retry
	for {
		signed, err := k.wait(ctx)
		if err != nil {
			return // ctx ended
		}
		cp, err := audit.PeekCheckpoint(signed)
		if err == nil {
			err = k.follow(ctx, cp.Origin)
		}
		if err == nil {
			err = k.round(ctx, k.sh, signed, cp)
		}
		switch {
		case ctx.Err() != nil:
			return
		case errors.Is(err, errFollowing):
			delay = k.c.o.retry
		case err != nil:
			k.c.o.logger.WarnContext(ctx, "witness: checkpoint not cosigned; retrying", "witness", k.w.ID(), "origin", cp.Origin, "size", cp.Size, "lag", cp.Size-min(cp.Size, k.sh.cosigned), "err", err)
		default:
			delay = k.c.o.retry
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		if err != nil && !errors.Is(err, errFollowing) {
			delay = min(2*delay, MaxRetry)
		}
	}
}

// errFollowing: another replica leads and submits.
var errFollowing = errors.New("another replica submits")

// round submits cp, of shard s, if this replica leads.
func (k *worker) round(ctx context.Context, s *shardState, signed []byte, cp audit.Checkpoint) error {
	if lease := k.c.o.lease; lease != nil {
		lead, err := lease.Leading(ctx)
		if err != nil {
			return fmt.Errorf("checkpoint lease: %w", err)
		}
		if !lead {
			return errFollowing
		}
	}
	current := s.Final == nil
	lag := cp.Size - min(cp.Size, s.cosigned)
	if s.Name == "" {
		k.c.m.lag(k.w, lag) // a log not sharded
	}
	k.c.m.shardLag(k.w, s.Name, lag)
	err := k.submit(ctx, s, signed, cp)
	k.c.m.submitted(k.w, err)
	if err == nil {
		s.cosigned = cp.Size
		if current {
			k.c.m.cosigned(k.w, cp.Size)
		}
		k.c.m.shardCosigned(k.w, s.Name, !current)
	}
	return err
}

// submit has the witness cosign cp (its note signed), from the size the
// witness has seen: first the one known, then the one a 409 names.
func (k *worker) submit(ctx context.Context, s *shardState, signed []byte, cp audit.Checkpoint) error {
	forWitness, err := audit.WitnessNote(signed, s.Key)
	if err != nil {
		return err
	}
	for range 3 {
		old := s.known
		if old > cp.Size {
			return fmt.Errorf("the witness has seen a checkpoint of size %d, beyond this replica's %d", old, cp.Size)
		}
		var proof [][]byte
		if old > 0 && old < cp.Size {
			if proof, err = s.Proofs.ConsistencyProof(ctx, old, cp.Size); err != nil {
				return err
			}
		}
		line, err := k.w.AddCheckpoint(ctx, old, proof, forWitness, signed)
		var stale *SizeError
		if errors.As(err, &stale) {
			s.known = stale.Size
			continue
		}
		if err != nil {
			return err
		}
		s.known = cp.Size
		return s.Store.AddCosignature(ctx, cp.Size, k.w.ID(), line)
	}
	return fmt.Errorf("the witness's size changed under each of three submissions (last %d)", s.known)
}
