package audit

import (
	"bytes"
	"cmp"
	"context"
	"encoding"
	"errors"
	"fmt"
	"slices"

	"github.com/transparency-dev/merkle/compact"
)

// Source is where an auditor reads a log: a server, or an export directory
// (DirSource). Nothing it returns is trusted. A Source that is also a
// CheckpointLister has every checkpoint it lists verified too.
type Source interface {
	// Checkpoint returns the latest signed checkpoint note.
	Checkpoint(ctx context.Context) ([]byte, error)
	// Entries returns the encoded entries [start, end) in index order, or
	// fewer if the source ends before end.
	Entries(ctx context.Context, start, end uint64) ([][]byte, error)
}

// Bounded is a Source that holds a whole log, such as an export
// (DirSource), rather than serving a growing one: everything it holds must
// be covered by its latest checkpoint. Unsigned returns how many entries
// it holds at index size and beyond.
type Bounded interface {
	Unsigned(ctx context.Context, size uint64) (uint64, error)
}

// VerifyOptions tunes Verify.
type VerifyOptions struct {
	// StatePath is the auditor's state file: the signed note of the last
	// checkpoint it verified. Verify refuses a log that is not an
	// extension of it and, on success, replaces it (atomically) with the
	// new checkpoint. A missing file means a first run: the checkpoint is
	// trusted as is. Empty: no state, so no defence against a fork or a
	// rollback between runs.
	StatePath string
	// WitnessPolicy: the cosignatures the latest checkpoint must carry.
	WitnessPolicy
	// OnEntry, if set, is called for every entry that decodes, in index
	// order, for deeper checks (re-verifying attestation evidence). Its
	// first error fails the entry. Entries stream in before the log's
	// hashes are checked: treat what it learns as unverified until Verify
	// returns nil.
	OnEntry func(index uint64, e Entry) error
	// Context is what OnEntry keeps from one entry to the next (the
	// devices enrolled so far, for renewals), if anything: it is saved in
	// the state file with the checkpoint, and restored from it for an
	// incremental run. An OnEntry that keeps context must give it here,
	// or its incremental runs start without it; without a saved context a
	// run with Context is a full one.
	Context Context
	// Full re-verifies every entry from index 0 even when the state file
	// allows an incremental run.
	Full bool
}

// Context is the state of an OnEntry checker, saved and restored whole
// (attest.LogChecker is one). UnmarshalBinary replaces what it holds.
type Context interface {
	encoding.BinaryMarshaler
	encoding.BinaryUnmarshaler
}

// Verify audits the log src serves against the log key v:
//  1. the latest checkpoint is signed by v's key for v's origin;
//  2. it is not smaller than the state file's (RollbackError) nor, at the
//     same size, another root (ForkError); the same for every checkpoint
//     the source lists, which must be signed too;
//  3. the entries hash to the checkpoint's root (MismatchError, or an
//     EntryError wrapping ErrMissingEntry when entries are missing), and
//     every other signed checkpoint is the root of a prefix (ForkError);
//  4. every entry decodes and passes OnEntry (EntryError);
//  5. a Bounded source (an export) holds no entry beyond the checkpoint
//     (UnsignedError);
//  6. the state file's checkpoint is consistent with the new one, by an
//     RFC 6962 consistency proof computed from the entries (ForkError);
//  7. the state file advances to the new checkpoint, with the compact
//     range of its tree and OnEntry's Context.
//
// With a state file that holds a range (and a Context, if opts has one)
// and without opts.Full, the run is incremental: it reads, hashes, decodes
// and checks only the entries from the state's size on, and appends their
// hashes to the state's range: that this gives the new root proves both
// the new entries and the state's tree a prefix of the new one (steps 3
// and 6), in O(new entries). Signed checkpoints the source lists below
// the state's size were checked by the runs that got there. If the new
// entries do not give the new root, Verify re-runs in full (Report.Rerun)
// to report what failed exactly as a full run does: a fork, a changed
// entry or missing ones.
//
// It returns the first failure, and a Report of what it checked either way.
func Verify(ctx context.Context, src Source, v *Verifier, opts VerifyOptions) (Report, error) {
	a := newAuditor(ctx, src, v, opts)
	err := a.run()
	if errors.Is(err, errIncremental) {
		if err := a.resetContext(); err != nil {
			return a.rep, err
		}
		opts.Full = true
		a = newAuditor(ctx, src, v, opts)
		a.rep.Rerun = true
		err = a.run()
	}
	if err != nil {
		a.rep.failed(err)
	}
	return a.rep, err
}

// errIncremental: the new entries of an incremental run do not extend the
// state's range to the new root; a full run says why.
var errIncremental = errors.New("audit: the new entries do not extend the verified tree to the new checkpoint")

func newAuditor(ctx context.Context, src Source, v *Verifier, opts VerifyOptions) *auditor {
	return &auditor{ctx: ctx, src: src, v: v, opts: opts, rep: Report{FirstBad: -1, Kinds: map[Kind]int{}}}
}

// auditor is one run of Verify.
type auditor struct {
	ctx  context.Context
	src  Source
	v    *Verifier
	opts VerifyOptions
	rep  Report

	target  Checkpoint     // the latest checkpoint
	note    []byte         // its note
	state   *state         // the state file's, if any
	signed  []Checkpoint   // the state's and the listed ones, by size
	from    uint64         // the first entry read: the state's size when incremental
	fresh   []byte         // opts.Context before the state's was restored
	leaves  flatLeaves     // leaf hashes of the entries read, from index from
	rng     *compact.Range // the tree's compact range once checked
	content error          // the first entry that fails to decode or check
}

func (a *auditor) run() error {
	if a.src == nil || a.v == nil {
		return errors.New("audit: verify: nil source or verifier")
	}
	for _, step := range []func() error{
		a.loadState, a.fetchTarget, a.compareState, a.fetchListed, a.readEntries,
		a.checkRoots, a.checkContent, a.checkBounded, a.checkState, a.saveState,
	} {
		if err := step(); err != nil {
			return err
		}
	}
	return nil
}

func (a *auditor) fetchTarget() error {
	note, err := a.src.Checkpoint(a.ctx)
	if err != nil {
		return fmt.Errorf("audit: read checkpoint: %w", err)
	}
	cp, err := OpenCheckpoint(note, a.v)
	if err != nil {
		return err
	}
	a.target, a.note = cp, note
	a.rep.Origin, a.rep.Size, a.rep.Root, a.rep.Time = cp.Origin, cp.Size, cp.Hash, cp.Time
	return a.checkWitnesses()
}

func (a *auditor) loadState() error {
	st, err := loadState(a.opts.StatePath, a.v)
	if err != nil || st == nil {
		return err
	}
	a.state, a.rep.HadState, a.rep.PreviousSize = st, true, st.cp.Size
	a.signed = append(a.signed, st.cp)
	c := a.opts.Context
	if a.opts.Full || st.rng == nil || (c != nil && st.context == nil) {
		return nil
	}
	if c != nil {
		if a.fresh, err = c.MarshalBinary(); err != nil {
			return fmt.Errorf("audit: save the entry checker's context: %w", err)
		}
		if err := c.UnmarshalBinary(st.context); err != nil {
			return fmt.Errorf("%w %s: context: %w", ErrState, a.opts.StatePath, err)
		}
	}
	a.from, a.rep.Incremental = st.cp.Size, true
	return nil
}

// resetContext gives opts.Context back what it held before the state's
// context was restored, for a full re-run.
func (a *auditor) resetContext() error {
	if a.opts.Context == nil || a.fresh == nil {
		return nil
	}
	if err := a.opts.Context.UnmarshalBinary(a.fresh); err != nil {
		return fmt.Errorf("audit: reset the entry checker's context: %w", err)
	}
	return nil
}

func (a *auditor) compareState() error {
	if a.state == nil {
		return nil
	}
	return a.compare(a.state.cp)
}

// compare checks a signed checkpoint against the latest: a larger one is a
// rollback, the same size with another root a fork.
func (a *auditor) compare(c Checkpoint) error {
	switch {
	case c.Size > a.target.Size:
		return &RollbackError{Seen: c, Got: a.target}
	case c.Size == a.target.Size && !bytes.Equal(c.Hash, a.target.Hash):
		return &ForkError{Old: c, New: a.target}
	}
	return nil
}

// fetchListed opens the checkpoints a CheckpointLister source lists.
func (a *auditor) fetchListed() error {
	if l, ok := a.src.(CheckpointLister); ok {
		notes, err := l.Checkpoints(a.ctx)
		if err != nil {
			return fmt.Errorf("audit: read checkpoints: %w", err)
		}
		for _, n := range notes {
			c, err := OpenCheckpoint(n, a.v)
			if err != nil {
				return fmt.Errorf("%w (a checkpoint the source lists)", err)
			}
			if err := a.compare(c); err != nil {
				return err
			}
			a.signed = append(a.signed, c)
		}
	}
	slices.SortStableFunc(a.signed, func(x, y Checkpoint) int { return cmp.Compare(x.Size, y.Size) })
	for i := 1; i < len(a.signed); i++ {
		if x, y := a.signed[i-1], a.signed[i]; x.Size == y.Size && !bytes.Equal(x.Hash, y.Hash) {
			return &ForkError{Old: x, New: y}
		}
	}
	a.rep.Checkpoints = countSizes(a.signed, a.target.Size)
	return nil
}

// readEntries reads the entries the checkpoint covers from index from,
// hashing each and decoding and checking each until one fails.
func (a *auditor) readEntries() error {
	n := a.target.Size
	a.leaves = make(flatLeaves, 0, min(n-a.from, 1<<20)*HashSize)
	for start := a.from; start < n; {
		end := min(start+readChunk, n)
		es, err := a.src.Entries(a.ctx, start, end)
		if err != nil {
			return fmt.Errorf("audit: read entries [%d, %d): %w", start, end, err)
		}
		if uint64(len(es)) > end-start {
			return fmt.Errorf("audit: read entries [%d, %d): got %d", start, end, len(es))
		}
		for i, e := range es {
			a.entry(start+uint64(i), e)
		}
		if uint64(len(es)) < end-start {
			break
		}
		start = end
	}
	a.rep.From, a.rep.Entries = a.from, a.leaves.Len()
	return nil
}

// entry hashes entry i and, until one fails, decodes and checks it.
func (a *auditor) entry(i uint64, data []byte) {
	a.leaves = append(a.leaves, LeafHash(data)...)
	if a.content != nil {
		return
	}
	e, err := Decode(data)
	if err == nil && a.opts.OnEntry != nil {
		err = a.opts.OnEntry(i, e)
	}
	if err != nil {
		a.content = &EntryError{Index: i, Err: err}
		return
	}
	a.rep.Kinds[e.Kind]++
}

// checkRoots checks the entries against the latest checkpoint and every
// other signed checkpoint from a.from on against the entries. In an
// incremental run any failure is errIncremental, for a full run to
// explain.
func (a *auditor) checkRoots() error {
	rng := factory.NewEmptyRange(0)
	if a.rep.Incremental {
		rng = a.state.rng
	}
	have := a.from + a.leaves.Len()
	roots := prefixRoots(rng, a.leaves, append(sizesOf(a.signed), a.target.Size))
	if have < a.target.Size || !sameHash(roots[a.target.Size], a.target.Hash) {
		if a.rep.Incremental {
			return errIncremental
		}
		return a.locate(roots, have)
	}
	for _, c := range a.signed {
		if c.Size < a.from {
			continue
		}
		if !sameHash(roots[c.Size], c.Hash) {
			if a.rep.Incremental {
				return errIncremental
			}
			return &ForkError{Old: c, New: a.target}
		}
	}
	a.rng = rng
	return nil
}

// locate narrows down entries that fail the latest checkpoint with the
// other signed checkpoints: the first one they fail bounds the bad entry.
func (a *auditor) locate(roots map[uint64][]byte, have uint64) error {
	from := uint64(0)
	for _, c := range a.signed {
		if c.Size > have {
			break
		}
		if !sameHash(roots[c.Size], c.Hash) {
			return &MismatchError{From: from, Size: c.Size}
		}
		from = c.Size
	}
	if have < a.target.Size {
		return &EntryError{Index: have, Err: fmt.Errorf("%w: the source has %d entries, the checkpoint covers %d", ErrMissingEntry, have, a.target.Size)}
	}
	return &MismatchError{From: from, Size: a.target.Size}
}

func (a *auditor) checkContent() error { return a.content }

// checkBounded refuses entries a Bounded source holds beyond the
// checkpoint: unsigned, they must not pass for logged ones.
func (a *auditor) checkBounded() error {
	b, ok := a.src.(Bounded)
	if !ok {
		return nil
	}
	n, err := b.Unsigned(a.ctx, a.target.Size)
	if err != nil {
		return fmt.Errorf("audit: look for entries beyond the checkpoint: %w", err)
	}
	if n > 0 {
		return &UnsignedError{Size: a.target.Size, Count: n}
	}
	return nil
}

// checkState proves the state file's checkpoint a prefix of the new one
// with a consistency proof built from the entries. An incremental run has
// proved it already: the new root is the state's range extended.
func (a *auditor) checkState() error {
	if a.state == nil || a.rep.Incremental {
		return nil
	}
	s := a.state.cp
	if s.Size == 0 || s.Size == a.target.Size {
		return nil
	}
	p, err := ConsistencyProof(a.ctx, a.leaves, s.Size, a.target.Size)
	if err != nil {
		return err
	}
	if err := VerifyConsistency(s.Size, a.target.Size, p, s.Hash, a.target.Hash); err != nil {
		return &ForkError{Old: s, New: a.target}
	}
	return nil
}

func (a *auditor) saveState() error {
	if a.opts.StatePath == "" {
		return nil
	}
	var context []byte
	if c := a.opts.Context; c != nil {
		var err error
		if context, err = c.MarshalBinary(); err != nil {
			return fmt.Errorf("audit: save the entry checker's context: %w", err)
		}
	}
	if err := saveState(a.opts.StatePath, a.note, a.rng, context); err != nil {
		return err
	}
	a.rep.StateUpdated = true
	return nil
}

// prefixRoots appends leaves, the leaves from rng.End() on, to rng and
// returns the root of the first s leaves for every size s in sizes from
// rng.End() to rng.End()+leaves.Len(), in one pass. rng ends at the
// largest of them.
func prefixRoots(rng *compact.Range, leaves flatLeaves, sizes []uint64) map[uint64][]byte {
	slices.Sort(sizes)
	from := rng.End()
	roots := make(map[uint64][]byte, len(sizes))
	for _, s := range slices.Compact(sizes) {
		if s < from {
			continue
		}
		if s > from+leaves.Len() {
			break
		}
		for rng.End() < s {
			_ = rng.Append(leaves.At(rng.End()-from), nil) // appending to a range from 0 cannot fail
		}
		roots[s] = rootOf(rng)
	}
	return roots
}

func sizesOf(cs []Checkpoint) []uint64 {
	sizes := make([]uint64, len(cs), len(cs)+1)
	for i, c := range cs {
		sizes[i] = c.Size
	}
	return sizes
}

// countSizes counts the distinct tree sizes among cs and the latest's.
func countSizes(cs []Checkpoint, latest uint64) int {
	return len(slices.Compact(slices.Sorted(slices.Values(append(sizesOf(cs), latest)))))
}
