package daemon

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/sigil-dev/sigil/api"
	"github.com/sigil-dev/sigil/audit"
	"github.com/sigil-dev/sigil/internal/server"
	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/internal/witness"
)

// liveLog is the audit log the daemon signs and serves: the Log of the
// current shard, replaced by the next shard's when the log rotates
// (audit.shard_period); a log never sharded keeps its one Log. Its
// methods act on the current Log.
type liveLog struct {
	mu       sync.Mutex
	cur      *audit.Log
	shard    store.AuditShard // the current shard; zero while not sharded
	switched chan struct{}    // closed when cur is replaced
}

var (
	_ server.AuditLog = (*liveLog)(nil)
	_ server.TiledLog = (*liveLog)(nil)
)

func newLiveLog(l *audit.Log, sh store.AuditShard) *liveLog {
	return &liveLog{cur: l, shard: sh, switched: make(chan struct{})}
}

// current returns the current Log and a channel closed when it is
// replaced.
func (ll *liveLog) current() (*audit.Log, <-chan struct{}) {
	ll.mu.Lock()
	defer ll.mu.Unlock()
	return ll.cur, ll.switched
}

// Shard returns the current shard (zero while not sharded).
func (ll *liveLog) Shard() store.AuditShard {
	ll.mu.Lock()
	defer ll.mu.Unlock()
	return ll.shard
}

// swap makes l, the Log of shard sh, the current one.
func (ll *liveLog) swap(l *audit.Log, sh store.AuditShard) {
	ll.mu.Lock()
	defer ll.mu.Unlock()
	ll.cur, ll.shard = l, sh
	close(ll.switched)
	ll.switched = make(chan struct{})
}

func (ll *liveLog) log() *audit.Log { l, _ := ll.current(); return l }

// Nudge nudges the current Log.
func (ll *liveLog) Nudge() { ll.log().Nudge() }

// Init is the current Log's Init.
func (ll *liveLog) Init(ctx context.Context) error { return ll.log().Init(ctx) }

// Integrate is the current Log's Integrate.
func (ll *liveLog) Integrate(ctx context.Context) error { return ll.log().Integrate(ctx) }

// Checkpoint is the current shard's latest checkpoint.
func (ll *liveLog) Checkpoint(ctx context.Context) ([]byte, error) { return ll.log().Checkpoint(ctx) }

// Entries reads the current shard's entries.
func (ll *liveLog) Entries(ctx context.Context, start, end uint64) ([][]byte, error) {
	return ll.log().Entries(ctx, start, end)
}

// Find finds an entry of the current shard.
func (ll *liveLog) Find(ctx context.Context, key string) (uint64, error) {
	return ll.log().Find(ctx, key)
}

// InclusionProof is the current shard's.
func (ll *liveLog) InclusionProof(ctx context.Context, index, size uint64) ([][]byte, error) {
	return ll.log().InclusionProof(ctx, index, size)
}

// ConsistencyProof is the current shard's.
func (ll *liveLog) ConsistencyProof(ctx context.Context, m, n uint64) ([][]byte, error) {
	return ll.log().ConsistencyProof(ctx, m, n)
}

// Tile is the current shard's.
func (ll *liveLog) Tile(ctx context.Context, t audit.Tile) ([]byte, error) {
	return ll.log().Tile(ctx, t)
}

// EntryBundle is the current shard's.
func (ll *liveLog) EntryBundle(ctx context.Context, t audit.Tile) ([]byte, error) {
	return ll.log().EntryBundle(ctx, t)
}

// untilSwitch returns the current Log and a context of ctx cancelled when
// that Log is replaced; call cancel when done with it.
func (ll *liveLog) untilSwitch(ctx context.Context) (*audit.Log, context.Context, context.CancelFunc) {
	l, switched := ll.current()
	cctx, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-switched:
			cancel()
		case <-cctx.Done():
		}
	}()
	return l, cctx, cancel
}

// WaitFor waits for a checkpoint of the current shard of at least size
// entries; if the log rotates meanwhile, for the new shard's first one.
func (ll *liveLog) WaitFor(ctx context.Context, size uint64) ([]byte, error) {
	for {
		l, wctx, cancel := ll.untilSwitch(ctx)
		note, err := l.WaitFor(wctx, size)
		cancel()
		if err == nil || ctx.Err() != nil {
			return note, err
		}
		size = 1
	}
}

// WaitPast returns the latest checkpoint once it covers at least size
// entries of the shard with origin, or, when the log has rotated past that
// shard, the current shard's first checkpoint (witness.PastWaiter).
func (ll *liveLog) WaitPast(ctx context.Context, origin string, size uint64) ([]byte, error) {
	for {
		l, wctx, cancel := ll.untilSwitch(ctx)
		want := size
		if l.Origin() != origin {
			want = 1
		}
		note, err := l.WaitFor(wctx, want)
		cancel()
		if err == nil || ctx.Err() != nil {
			return note, err
		}
	}
}

// Run runs the current Log until ctx ends, and the next one after each
// rotation.
func (ll *liveLog) Run(ctx context.Context) error {
	for {
		l, rctx, cancel := ll.untilSwitch(ctx)
		err := l.Run(rctx)
		cancel()
		if ctx.Err() != nil || err != nil {
			return err
		}
	}
}

// currentShard returns the log's current shard and whether it is sharded.
func currentShard(ctx context.Context, st store.AuditReader) (store.AuditShard, bool, error) {
	rows, err := st.AuditShards(ctx)
	if err != nil || len(rows) == 0 {
		return store.AuditShard{}, false, err
	}
	return rows[len(rows)-1], true, nil
}

// openShard returns the Log of shard sh: next of prev, or new.
func (d *Daemon) shardLog(prev *audit.Log, sh store.AuditShard, opts []audit.Option) (*audit.Log, error) {
	signer, err := audit.NewSigner(sh.Origin, d.pki.AuditKey)
	if err != nil {
		return nil, err
	}
	view := store.ShardStorage(d.store, sh, 0)
	if prev != nil {
		return prev.Next(view, signer, sh.Origin)
	}
	return audit.New(view, signer, sh.Origin, opts...)
}

// shardTick is how often the daemon checks whether the log's shard
// period has ended: a tenth of the period, at most a second.
func shardTick(period time.Duration) time.Duration { return min(period/10, time.Second) }

// runShards rotates the log at the end of each audit.shard_period, once
// across replicas (the checkpoint publisher's lease), and moves this
// replica to the new shard, whoever rotated; until ctx ends.
func (d *Daemon) runShards(ctx context.Context) error {
	period := d.cfg.Audit.ShardPeriod
	t := time.NewTicker(shardTick(period))
	defer t.Stop()
	for {
		if err := d.shardStep(ctx, time.Now()); err != nil && ctx.Err() == nil {
			if errors.Is(err, audit.ErrTampered) {
				return err
			}
			d.log.WarnContext(ctx, "audit: shard rotation failed; retrying", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// shardStep rotates if the current shard's period is over and this replica
// leads, then follows the store to its current shard.
func (d *Daemon) shardStep(ctx context.Context, now time.Time) error {
	name := audit.ShardName(now, d.cfg.Audit.ShardPeriod)
	cur := d.audit.Shard()
	if cur.Name >= name { // names sort as periods; a clock gone back does not rotate
		return nil
	}
	leading := true
	if d.lease != nil {
		var err error
		if leading, err = d.lease.Leading(ctx); err != nil {
			return err
		}
	}
	if leading {
		sh, err := store.StartShard(ctx, d.store, d.pki.AuditKey, d.baseOrigin, name, now)
		switch {
		case errors.Is(err, store.ErrConflict):
			// another replica rotated first
		case err != nil:
			return err
		default:
			d.log.InfoContext(ctx, "audit: log rotated to a new shard", "shard", sh.Name, "origin", sh.Origin, "start", sh.Start)
		}
	}
	return d.followShard(ctx)
}

// followShard moves the live log to the store's current shard, if it is
// not there.
func (d *Daemon) followShard(ctx context.Context) error {
	sh, sharded, err := currentShard(ctx, d.store)
	if err != nil || !sharded || sh.Start == d.audit.Shard().Start && d.audit.Shard().Name != "" {
		return err
	}
	l, err := d.shardLog(d.audit.log(), sh, nil)
	if err != nil {
		return err
	}
	if err := l.Init(ctx); err != nil {
		return fmt.Errorf("audit: shard %s: %w", sh.Name, err)
	}
	d.audit.swap(l, sh)
	return nil
}

// shardIndex serves the chain of shards (server.LogShards) from the
// store, the same on every replica: sealed shards from their successors'
// first entries, which carry their final checkpoints; the current one
// from the live log.
type shardIndex struct {
	d *Daemon

	mu     sync.Mutex
	sealed map[string]sealedShard // by name; sealed shards never change
}

type sealedShard struct {
	info api.LogShard
	log  *audit.Sealed
}

var _ server.LogShards = (*shardIndex)(nil)

// Shards lists the shards, oldest first.
func (x *shardIndex) Shards(ctx context.Context) ([]api.LogShard, error) {
	rows, ends, err := store.Shards(ctx, x.d.store, x.d.baseOrigin)
	if err != nil {
		return nil, err
	}
	out := make([]api.LogShard, 0, len(rows))
	for i, sh := range rows {
		if ends[i] > 0 {
			s, err := x.sealedShard(ctx, sh, ends[i])
			if err != nil {
				return nil, err
			}
			info := s.info
			info.Archived = sh.Archived // archived since it was cached, perhaps
			out = append(out, info)
			continue
		}
		info := api.LogShard{Name: sh.Name, Origin: sh.Origin, Start: sh.Start}
		if l := x.d.audit.log(); l.Origin() == sh.Origin {
			if note, err := l.Checkpoint(ctx); err == nil {
				cp, _ := audit.PeekCheckpoint(note)
				info.Size, info.Checkpoint = cp.Size, string(note)
			}
		}
		out = append(out, info)
	}
	return out, nil
}

// Shard returns the shard named name.
func (x *shardIndex) Shard(ctx context.Context, name string) (server.ShardLog, error) {
	rows, ends, err := store.Shards(ctx, x.d.store, x.d.baseOrigin)
	if err != nil {
		return nil, err
	}
	for i, sh := range rows {
		switch {
		case sh.Name != name:
		case sh.Archived:
			return nil, fmt.Errorf("%w: %q is archived: its entries are no longer served, verify its export", server.ErrNoShard, name)
		case ends[i] > 0:
			s, err := x.sealedShard(ctx, sh, ends[i])
			if err != nil || x.d.published == nil {
				return s.log, err
			}
			return cosignedShard{s.log, x.d.published}, nil
		case x.d.audit.log().Origin() == sh.Origin:
			return x.d.auditLog().(server.ShardLog), nil
		default:
			return nil, fmt.Errorf("audit shard %s: not yet open on this replica", name)
		}
	}
	return nil, fmt.Errorf("%w: %q", server.ErrNoShard, name)
}

// sealedShard returns sealed shard sh, ending at global index end: its
// final checkpoint is in the first entry of the next shard.
func (x *shardIndex) sealedShard(ctx context.Context, sh store.AuditShard, end uint64) (sealedShard, error) {
	x.mu.Lock()
	s, ok := x.sealed[sh.Name]
	x.mu.Unlock()
	if ok {
		return s, nil
	}
	v, err := x.d.checkpoints.Renamed(sh.Origin)
	if err != nil {
		return sealedShard{}, err
	}
	view := store.ShardStorage(x.d.store, sh, end)
	note, err := finalCheckpoint(ctx, view, v) // the seal, kept when archived
	if err != nil {
		return sealedShard{}, err
	}
	l, err := audit.NewSealed(view, note, v)
	if err != nil {
		return sealedShard{}, err
	}
	s = sealedShard{log: l, info: api.LogShard{Name: sh.Name, Origin: sh.Origin, Start: sh.Start,
		Size: end - sh.Start, Sealed: true, Checkpoint: string(note)}}
	x.mu.Lock()
	if x.sealed == nil {
		x.sealed = map[string]sealedShard{}
	}
	x.sealed[sh.Name] = s
	x.mu.Unlock()
	return s, nil
}

// finalCheckpoint returns the final checkpoint of sealed shard view,
// which v must have signed, of all its entries: audit.ErrTampered if not.
func finalCheckpoint(ctx context.Context, view store.ShardLog, v *audit.Verifier) ([]byte, error) {
	note, err := view.LatestCheckpoint(ctx)
	if err != nil {
		return nil, err
	}
	size := view.End - view.Shard.Start
	if cp, err := audit.OpenCheckpoint(note, v); err != nil || cp.Size != size {
		return nil, fmt.Errorf("%w: shard %q has no final checkpoint of its %d entries (%v)", audit.ErrTampered, view.Shard.Name, size, err)
	}
	return note, nil
}

// auditShards serves the chain of shards when the log is or will be
// sharded; nil (no routes) otherwise.
func (d *Daemon) auditShards() server.LogShards {
	if d.cfg.Audit.ShardPeriod == 0 && d.audit.Shard().Name == "" {
		return nil
	}
	return &shardIndex{d: d}
}

// cosignedShard is a sealed shard whose final checkpoint is served with
// the witnesses' cosignatures stored for it.
type cosignedShard struct {
	*audit.Sealed
	published *witness.Published
}

// Checkpoint returns the final checkpoint with its cosignatures; without
// them if they cannot be read.
func (c cosignedShard) Checkpoint(ctx context.Context) ([]byte, error) {
	note, err := c.Sealed.Checkpoint(ctx)
	if err != nil {
		return nil, err
	}
	return cosigned(ctx, c.published, note), nil
}

// cosigned returns note with the witnesses' cosignatures stored for it;
// note itself without witnesses (p nil) or if they cannot be read.
func cosigned(ctx context.Context, p *witness.Published, note []byte) []byte {
	if p == nil {
		return note
	}
	if out, err := p.Cosign(ctx, note); err == nil {
		return out
	}
	return note
}

// FindSealed finds the entry appended with key in a sealed shard
// (server.ShardFinder): its proof against the shard's final checkpoint,
// cosigned when there are witnesses. An entry of an archived shard is
// found only while the store keeps its key (sigild audit archive --drop
// deletes the keys with the entries: then it is not found, and the error
// lists the archived shards not searched).
func (x *shardIndex) FindSealed(ctx context.Context, key string) (api.AuditProof, error) {
	rows, ends, err := store.Shards(ctx, x.d.store, x.d.baseOrigin)
	if err != nil {
		return api.AuditProof{}, err
	}
	i, err := x.d.store.AuditIndex(ctx, key)
	if errors.Is(err, store.ErrNotFound) {
		var archived []string
		for _, sh := range rows {
			if sh.Archived {
				archived = append(archived, sh.Name)
			}
		}
		if len(archived) > 0 { // archiving drops a shard's keys with its entries
			err = fmt.Errorf("%w; not in the served shards: archived shards (%s) are not searched, look in their exports", err, strings.Join(archived, ", "))
		}
	}
	if err != nil {
		return api.AuditProof{}, err
	}
	for j, sh := range rows {
		switch {
		case i < sh.Start || ends[j] > 0 && i >= ends[j]:
		case ends[j] == 0:
			return api.AuditProof{}, server.ErrInCurrentShard
		case sh.Archived:
			return api.AuditProof{}, fmt.Errorf("%w (shard %s)", server.ErrArchivedShard, sh.Name)
		default:
			s, err := x.sealedShard(ctx, sh, ends[j])
			if err != nil {
				return api.AuditProof{}, err
			}
			size := ends[j] - sh.Start
			hashes, err := audit.InclusionProof(ctx, store.ShardStorage(x.d.store, sh, ends[j]), i-sh.Start, size)
			if err != nil {
				return api.AuditProof{}, err
			}
			note := cosigned(ctx, x.d.published, []byte(s.info.Checkpoint))
			return api.AuditProof{Index: i - sh.Start, Size: size, Hashes: hashes, Shard: sh.Name, Checkpoint: string(note)}, nil
		}
	}
	return api.AuditProof{}, server.ErrInCurrentShard // not sharded yet
}
