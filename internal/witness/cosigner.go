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
	retry    time.Duration
	logger   *slog.Logger
	registry prometheus.Registerer
}

// WithLease makes the Cosigner submit only while lease says this replica
// leads (the audit log's checkpoint lease): one replica talks to the
// witnesses. Without it, it always submits.
func WithLease(l audit.Lease) Option { return func(o *options) { o.lease = l } }

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
	o := options{retry: DefaultRetry, logger: slog.Default()}
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
		wg.Go(func() { (&worker{c: c, w: w}).run(ctx) })
	}
	wg.Wait()
	return nil
}

// worker submits to one witness.
type worker struct {
	c        *Cosigner
	w        *Client
	known    uint64 // the witness's latest size for the log, as far as known
	cosigned uint64 // the size of the last checkpoint it cosigned here
}

func (k *worker) run(ctx context.Context) {
	delay := k.c.o.retry
	for {
		signed, err := k.c.log.WaitFor(ctx, k.cosigned+1)
		if err != nil {
			return // ctx ended
		}
		cp, err := audit.PeekCheckpoint(signed)
		if err == nil {
			err = k.round(ctx, signed, cp)
		}
		switch {
		case ctx.Err() != nil:
			return
		case errors.Is(err, errFollowing):
			delay = k.c.o.retry
		case err != nil:
			k.c.o.logger.WarnContext(ctx, "witness: checkpoint not cosigned; retrying", "witness", k.w.ID(), "size", cp.Size, "lag", cp.Size-min(cp.Size, k.cosigned), "err", err)
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

// round submits cp if this replica leads.
func (k *worker) round(ctx context.Context, signed []byte, cp audit.Checkpoint) error {
	if lease := k.c.o.lease; lease != nil {
		lead, err := lease.Leading(ctx)
		if err != nil {
			return fmt.Errorf("checkpoint lease: %w", err)
		}
		if !lead {
			return errFollowing
		}
	}
	k.c.m.lag(k.w, cp.Size-min(cp.Size, k.cosigned))
	err := k.submit(ctx, signed, cp)
	k.c.m.submitted(k.w, err)
	if err == nil {
		k.cosigned = cp.Size
		k.c.m.cosigned(k.w, cp.Size)
	}
	return err
}

// submit has the witness cosign cp (its note signed), from the size the
// witness has seen: first the one known, then the one a 409 names.
func (k *worker) submit(ctx context.Context, signed []byte, cp audit.Checkpoint) error {
	forWitness, err := audit.WitnessNote(signed, k.c.key)
	if err != nil {
		return err
	}
	for range 3 {
		old := k.known
		if old > cp.Size {
			return fmt.Errorf("the witness has seen a checkpoint of size %d, beyond this replica's %d", old, cp.Size)
		}
		var proof [][]byte
		if old > 0 && old < cp.Size {
			if proof, err = k.c.log.ConsistencyProof(ctx, old, cp.Size); err != nil {
				return err
			}
		}
		line, err := k.w.AddCheckpoint(ctx, old, proof, forWitness, signed)
		var stale *SizeError
		if errors.As(err, &stale) {
			k.known = stale.Size
			continue
		}
		if err != nil {
			return err
		}
		k.known = cp.Size
		return k.c.store.AddCosignature(ctx, cp.Size, k.w.ID(), line)
	}
	return fmt.Errorf("the witness's size changed under each of three submissions (last %d)", k.known)
}
