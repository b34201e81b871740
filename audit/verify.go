package audit

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
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
	// OnEntry, if set, is called for every entry that decodes, in index
	// order, for deeper checks (re-verifying attestation evidence). Its
	// first error fails the entry. Entries stream in before the log's
	// hashes are checked: treat what it learns as unverified until Verify
	// returns nil.
	OnEntry func(index uint64, e Entry) error
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
//  7. the state file advances to the new checkpoint.
//
// It returns the first failure, and a Report of what it checked either way.
func Verify(ctx context.Context, src Source, v *Verifier, opts VerifyOptions) (Report, error) {
	a := &auditor{ctx: ctx, src: src, v: v, opts: opts, rep: Report{FirstBad: -1, Kinds: map[Kind]int{}}}
	err := a.run()
	if err != nil {
		a.rep.failed(err)
	}
	return a.rep, err
}

// auditor is one run of Verify.
type auditor struct {
	ctx  context.Context
	src  Source
	v    *Verifier
	opts VerifyOptions
	rep  Report

	target  Checkpoint   // the latest checkpoint
	note    []byte       // its note
	state   *Checkpoint  // the state file's, if any
	signed  []Checkpoint // the state's and the listed ones, by size
	leaves  flatLeaves   // leaf hashes of the entries read
	content error        // the first entry that fails to decode or check
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
	return nil
}

func (a *auditor) loadState() error {
	st, _, err := loadState(a.opts.StatePath, a.v)
	if err != nil || st == nil {
		return err
	}
	a.state, a.rep.HadState, a.rep.PreviousSize = st, true, st.Size
	a.signed = append(a.signed, *st)
	return nil
}

func (a *auditor) compareState() error {
	if a.state == nil {
		return nil
	}
	return a.compare(*a.state)
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

// readEntries reads the entries the checkpoint covers, hashing each and
// decoding and checking each until one fails.
func (a *auditor) readEntries() error {
	n := a.target.Size
	a.leaves = make(flatLeaves, 0, min(n, 1<<20)*HashSize)
	for start := uint64(0); start < n; {
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
	a.rep.Entries = a.leaves.Len()
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
// other signed checkpoint against the entries.
func (a *auditor) checkRoots() error {
	have := a.leaves.Len()
	roots := prefixRoots(a.leaves, append(sizesOf(a.signed), a.target.Size))
	if have < a.target.Size || !sameHash(roots[a.target.Size], a.target.Hash) {
		return a.locate(roots, have)
	}
	for _, c := range a.signed {
		if !sameHash(roots[c.Size], c.Hash) {
			return &ForkError{Old: c, New: a.target}
		}
	}
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
// with a consistency proof built from the entries.
func (a *auditor) checkState() error {
	s := a.state
	if s == nil || s.Size == 0 || s.Size == a.target.Size {
		return nil
	}
	p, err := ConsistencyProof(a.ctx, a.leaves, s.Size, a.target.Size)
	if err != nil {
		return err
	}
	if err := VerifyConsistency(s.Size, a.target.Size, p, s.Hash, a.target.Hash); err != nil {
		return &ForkError{Old: *s, New: a.target}
	}
	return nil
}

func (a *auditor) saveState() error {
	if a.opts.StatePath == "" {
		return nil
	}
	if err := saveState(a.opts.StatePath, a.note); err != nil {
		return err
	}
	a.rep.StateUpdated = true
	return nil
}

// prefixRoots returns the root of the first s leaves for every size s in
// sizes that is at most leaves.Len(), in one pass.
func prefixRoots(leaves flatLeaves, sizes []uint64) map[uint64][]byte {
	slices.Sort(sizes)
	roots := make(map[uint64][]byte, len(sizes))
	rng := factory.NewEmptyRange(0)
	for _, s := range slices.Compact(sizes) {
		if s > leaves.Len() {
			break
		}
		for rng.End() < s {
			_ = rng.Append(leaves.At(rng.End()), nil) // appending to a range from 0 cannot fail
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
