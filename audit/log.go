package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/transparency-dev/merkle/compact"
)

// Storage holds the log: entries, appended elsewhere (in the transaction of
// the operation each records), and the checkpoints the Log signs.
type Storage interface {
	// Size returns the number of entries stored.
	Size(ctx context.Context) (uint64, error)
	// LeafHashes returns LeafHash of entries [start, end): end-start
	// hashes in index order.
	LeafHashes(ctx context.Context, start, end uint64) ([][]byte, error)
	// Entries returns the encoded entries [start, end): end-start of them
	// in index order.
	Entries(ctx context.Context, start, end uint64) ([][]byte, error)
	// LatestCheckpoint returns the stored checkpoint note of the largest
	// size, or nil when none is stored.
	LatestCheckpoint(ctx context.Context) ([]byte, error)
	// PutCheckpoint stores the signed checkpoint note of the tree of the
	// first size entries.
	PutCheckpoint(ctx context.Context, size uint64, note []byte) error
}

// CheckpointLister is an optional interface of a Storage or a Source: it
// returns every checkpoint note stored or published, in any order.
// WriteExport exports them and Verify checks them all.
type CheckpointLister interface {
	Checkpoints(ctx context.Context) ([][]byte, error)
}

// Log integrates the entries of a Storage into a Merkle tree and signs a
// checkpoint for each batch of new entries. Run does the work; the other
// methods are safe for concurrent use.
type Log struct {
	storage Storage
	signer  *Signer
	origin  string
	o       options
	m       *metrics
	nudge   chan struct{}
	running atomic.Bool

	work sync.Mutex     // serialises Init and Integrate
	rng  *compact.Range // leaves integrated so far, under work

	mu      sync.Mutex
	latest  []byte        // latest signed note, nil if none
	size    uint64        // its size
	changed chan struct{} // closed and replaced when latest changes
}

// New returns a Log of the entries in storage, signing checkpoints with
// signer. origin is the log's name in every checkpoint; it must be the
// signer's name, so that a verifier built from the name and the public key
// pins both (C2SP recommends the origin as the key name).
func New(storage Storage, signer *Signer, origin string, opts ...Option) (*Log, error) {
	switch {
	case storage == nil || signer == nil:
		return nil, errors.New("audit: new log: nil storage or signer")
	case signer.Name() != origin:
		return nil, fmt.Errorf("audit: new log: origin %q, but the signer's key is named %q", origin, signer.Name())
	}
	o, err := newOptions(opts)
	if err != nil {
		return nil, err
	}
	m, err := newMetrics(o.registerer)
	if err != nil {
		return nil, err
	}
	return &Log{storage: storage, signer: signer, origin: origin, o: o, m: m,
		nudge: make(chan struct{}, 1), changed: make(chan struct{})}, nil
}

// Init rebuilds the tree from the storage's entries and checks it against
// the latest stored checkpoint: signed by the log key, for the log's
// origin, covering no more entries than are stored, with the root
// recomputed from the entries' data (each stored leaf hash must be the hash
// of its entry: an entry edited with its leaf hash kept is caught here, not
// only by an offline verifier); and, if the storage is a NodeHashReader,
// checks the nodes it stores of those entries against the rebuilt tree. A
// mismatch is ErrTampered. It reads and hashes every entry the checkpoint
// covers: for a million entries 1.7 s from memory, of which rebuilding the
// tree from the leaf hashes alone takes 1.3 s (BenchmarkInit), and 3.6 s
// from SQLite for small entries, against 1.4 s for the leaf hashes alone
// (sqlite's BenchmarkAuditInit); the difference grows with the entries'
// size, which it reads and hashes.
// Integrate and Run call Init; call it first to fail before serving. It
// does its work once.
func (l *Log) Init(ctx context.Context) error {
	l.work.Lock()
	defer l.work.Unlock()
	return l.init(ctx)
}

func (l *Log) init(ctx context.Context) error {
	if l.rng != nil {
		return nil
	}
	note, cp, err := l.storedCheckpoint(ctx)
	if err != nil {
		return err
	}
	check := newNodeCheck(ctx, l.storage)
	rng, err := l.scanEntries(ctx, cp.Size, check.visitor())
	if err != nil {
		return err
	}
	if note != nil && !sameHash(rootOf(rng), cp.Hash) {
		return fmt.Errorf("%w: the leaf hashes of the first %d entries do not hash to the stored checkpoint's root", ErrTampered, cp.Size)
	}
	if err := check.done(); err != nil {
		return err
	}
	l.rng = rng
	if note != nil {
		l.publish(note, cp.Size)
	}
	return nil
}

// scanEntries is scan over the first size entries, each stored leaf hash
// checked against the hash of its entry's data.
func (l *Log) scanEntries(ctx context.Context, size uint64, visit compact.VisitFn) (*compact.Range, error) {
	return scanChecked(ctx, l.storage, size, visit, l.checkLeaves)
}

// storedCheckpoint reads and opens the latest stored checkpoint and checks
// the storage holds the entries it covers. No checkpoint is a nil note.
func (l *Log) storedCheckpoint(ctx context.Context) ([]byte, Checkpoint, error) {
	note, err := l.storage.LatestCheckpoint(ctx)
	if err != nil || len(note) == 0 {
		return nil, Checkpoint{}, readErr("latest checkpoint", err)
	}
	cp, err := OpenCheckpoint(note, l.signer.Verifier())
	if err != nil {
		return nil, Checkpoint{}, fmt.Errorf("%w: stored checkpoint: %w", ErrTampered, err)
	}
	stored, err := l.storage.Size(ctx)
	if err != nil {
		return nil, Checkpoint{}, readErr("size", err)
	}
	if stored < cp.Size {
		return nil, Checkpoint{}, fmt.Errorf("%w: the stored checkpoint covers %d entries, the storage has %d", ErrTampered, cp.Size, stored)
	}
	return note, cp, nil
}

func readErr(what string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("audit: read %s: %w", what, err)
}

// NudgeGap is the least time from one round of Run to the next that a
// Nudge starts (or the interval, if shorter). Under load every operation
// nudges, and each round signs a checkpoint (an HSM signature and a
// write): without a gap that is one for every few entries.
const NudgeGap = 50 * time.Millisecond

// Run integrates new entries every interval and whenever nudged, until ctx
// ends, when it returns nil. Failures to read, sign (the HSM is down) or
// store are logged, counted and retried at the next tick; only ErrTampered
// stops Run, which returns it. Run at most once at a time; other
// goroutines may call Integrate meanwhile.
func (l *Log) Run(ctx context.Context) error {
	if !l.running.CompareAndSwap(false, true) {
		return errors.New("audit: Run is already running")
	}
	defer l.running.Store(false)
	t := time.NewTicker(l.o.interval)
	defer t.Stop()
	gap := min(NudgeGap, l.o.interval)
	for {
		began := time.Now()
		if err := l.Integrate(ctx); errors.Is(err, ErrTampered) {
			l.o.logger.ErrorContext(ctx, "audit: log storage tampered with; stopping", "err", err)
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-l.nudge:
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(time.Until(began.Add(gap))):
			}
		}
	}
}

// Integrate does one round of Run's work now: Init if not done, then
// integrate the entries stored since the last checkpoint and sign and store
// a checkpoint for them (also for an empty log without one). It returns
// the failure Run would log and retry, or ErrTampered. A server can call
// it at shutdown, after its last append, to checkpoint everything.
func (l *Log) Integrate(ctx context.Context) error {
	l.work.Lock()
	defer l.work.Unlock()
	if err := l.init(ctx); err != nil {
		if !errors.Is(err, ErrTampered) {
			return l.failed(ctx, stageRead, err)
		}
		return err
	}
	return l.integrate(ctx)
}

// Nudge asks Run to integrate new entries now, or NudgeGap after its last
// round, rather than at the next tick. It never blocks.
func (l *Log) Nudge() {
	select {
	case l.nudge <- struct{}{}:
	default:
	}
}

// integrate extends the tree with the entries stored since the last
// checkpoint and signs and stores a checkpoint for them.
func (l *Log) integrate(ctx context.Context) error {
	began := time.Now()
	stored, err := l.storage.Size(ctx)
	if err != nil {
		return l.failed(ctx, stageRead, err)
	}
	size, has := l.current()
	l.m.observe(size, stored)
	switch {
	case stored < l.rng.End():
		return fmt.Errorf("%w: the storage has %d entries, %d were integrated", ErrTampered, stored, l.rng.End())
	case has && size == stored:
		return nil
	}
	lead, err := l.leading(ctx)
	if err != nil {
		return l.failed(ctx, stageLease, err)
	}
	if !lead {
		return l.follow(ctx)
	}
	if err := l.extend(ctx, stored); err != nil {
		if errors.Is(err, ErrTampered) {
			return err
		}
		return l.failed(ctx, stageRead, err)
	}
	return l.checkpoint(ctx, stored, began)
}

// extend appends leaves up to index to, checking each stored leaf hash
// against its entry, and each stored node (see NodeHashReader) against the
// leaves: the log never signs a tree of hashes that do not match the
// entries auditors will read, nor one whose stored nodes do not match it.
func (l *Log) extend(ctx context.Context, to uint64) error {
	for l.rng.End() < to {
		start := l.rng.End()
		end := min(start+readChunk, to)
		hashes, err := readLeafHashes(ctx, l.storage, start, end)
		if err != nil {
			return err
		}
		if err := l.checkLeaves(ctx, start, end, hashes); err != nil {
			return err
		}
		// Into a copy, so that l.rng has only leaves whose nodes passed.
		rng, err := factory.NewRange(0, start, slices.Clone(l.rng.Hashes()))
		if err != nil {
			return fmt.Errorf("audit: copy compact range: %w", err)
		}
		check := newNodeCheck(ctx, l.storage)
		for _, h := range hashes {
			if err := rng.Append(h, check.visitor()); err != nil {
				return fmt.Errorf("audit: append leaf: %w", err)
			}
		}
		if err := check.done(); err != nil {
			return err
		}
		l.rng = rng
	}
	return nil
}

// checkLeaves compares hashes with the leaf hashes of entries [start, end).
func (l *Log) checkLeaves(ctx context.Context, start, end uint64, hashes [][]byte) error {
	entries, err := l.storage.Entries(ctx, start, end)
	if err != nil {
		return readErr(fmt.Sprintf("entries [%d, %d)", start, end), err)
	}
	if uint64(len(entries)) != end-start {
		return fmt.Errorf("audit: read entries [%d, %d): got %d", start, end, len(entries))
	}
	for i, e := range entries {
		if !bytes.Equal(LeafHash(e), hashes[i]) {
			return fmt.Errorf("%w: the stored leaf hash of entry %d is not the hash of the entry", ErrTampered, start+uint64(i))
		}
	}
	return nil
}

// checkpoint signs and stores the checkpoint of the tree integrated so far.
func (l *Log) checkpoint(ctx context.Context, stored uint64, began time.Time) error {
	cp := Checkpoint{Origin: l.origin, Size: l.rng.End(), Hash: rootOf(l.rng), Time: l.o.now().UTC().Truncate(time.Millisecond)}
	// Reading and hashing took time: a leader that lost its lease
	// meanwhile (paused, cut off) leaves the signing to the new one.
	if lead, err := l.leading(ctx); err != nil || !lead {
		if err != nil {
			return l.failed(ctx, stageLease, err)
		}
		return l.follow(ctx)
	}
	note, err := l.signer.Sign(cp)
	if err != nil {
		return l.failed(ctx, stageSign, err)
	}
	if err := l.storage.PutCheckpoint(ctx, cp.Size, note); err != nil {
		// The fence: another replica stored this size or a larger one
		// first. Publish its checkpoint, once checked to be of the same
		// tree, never ours.
		if ferr := l.follow(ctx); errors.Is(ferr, ErrTampered) {
			return ferr
		}
		if size, has := l.current(); has && size >= cp.Size {
			return nil
		}
		return l.failed(ctx, stageStore, err)
	}
	l.publish(note, cp.Size)
	l.m.checkpointed(cp.Size, stored, time.Since(began))
	l.o.logger.DebugContext(ctx, "audit: checkpoint signed", "size", cp.Size, "root", b64(cp.Hash))
	return nil
}

// failed logs and counts a failure that the next tick retries.
func (l *Log) failed(ctx context.Context, stage string, err error) error {
	if ctx.Err() != nil {
		return err
	}
	l.m.fail(stage)
	l.o.logger.WarnContext(ctx, "audit: checkpoint failed; retrying at the next tick", "stage", stage, "err", err)
	return fmt.Errorf("audit: checkpoint (%s): %w", stage, err)
}

// publish makes note, of the given size, the latest checkpoint.
func (l *Log) publish(note []byte, size uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.latest, l.size = note, size
	close(l.changed)
	l.changed = make(chan struct{})
}

// current returns the latest checkpoint's size and whether there is one.
func (l *Log) current() (uint64, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.size, l.latest != nil
}

// Checkpoint returns the latest signed checkpoint note: the stored one if
// it is signed by the log key and larger than the one Run published (another
// replica signed it; Run checks it against the entries when it adopts it),
// else the published one. Without a stored one to read (the storage is
// down) it is the published one. ErrNoCheckpoint if none.
func (l *Log) Checkpoint(ctx context.Context) ([]byte, error) {
	l.mu.Lock()
	note, size := l.latest, l.size
	l.mu.Unlock()
	stored, err := l.storage.LatestCheckpoint(ctx)
	switch {
	case err != nil && note == nil:
		return nil, readErr("latest checkpoint", err)
	case err == nil && len(stored) > 0:
		if cp, err := OpenCheckpoint(stored, l.signer.Verifier()); err == nil && (note == nil || cp.Size > size) {
			note = stored
			l.Nudge()
		}
	}
	if len(note) == 0 {
		return nil, ErrNoCheckpoint
	}
	return bytes.Clone(note), nil
}

// WaitFor blocks until a checkpoint covers at least size entries, nudging
// Run, and returns it; or until ctx ends.
func (l *Log) WaitFor(ctx context.Context, size uint64) ([]byte, error) {
	for {
		l.mu.Lock()
		note, have, changed := l.latest, l.size, l.changed
		l.mu.Unlock()
		if note != nil && have >= size {
			return bytes.Clone(note), nil
		}
		l.Nudge()
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("audit: wait for a checkpoint of size %d: %w", size, ctx.Err())
		case <-changed:
		}
	}
}

// InclusionProof returns the inclusion proof of entry index in the tree of
// the first size entries (index < size <= entries stored).
func (l *Log) InclusionProof(ctx context.Context, index, size uint64) ([][]byte, error) {
	if err := l.checkSize(ctx, size); err != nil {
		return nil, err
	}
	return InclusionProof(ctx, l.storage, index, size)
}

// ConsistencyProof returns the consistency proof between the trees of the
// first m and the first n entries (m <= n <= entries stored).
func (l *Log) ConsistencyProof(ctx context.Context, m, n uint64) ([][]byte, error) {
	if err := l.checkSize(ctx, n); err != nil {
		return nil, err
	}
	return ConsistencyProof(ctx, l.storage, m, n)
}

// checkSize refuses a tree size beyond the stored entries.
func (l *Log) checkSize(ctx context.Context, size uint64) error {
	stored, err := l.storage.Size(ctx)
	if err != nil {
		return readErr("size", err)
	}
	if size > stored {
		return fmt.Errorf("audit: tree size %d is beyond the log's %d entries", size, stored)
	}
	return nil
}
