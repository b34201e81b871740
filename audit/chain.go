package audit

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/sigil-dev/sigil/internal/atomicfile"
)

// ShardInfo is one shard as a log sharded by time lists it (unverified).
type ShardInfo struct {
	Name   string
	Origin string
	Sealed bool
	// Archived: the server no longer holds its entries; VerifyChain takes
	// it from the auditor's state, which must hold its final checkpoint
	// (verify its export first).
	Archived bool
	// Checkpoint is its latest checkpoint as listed: the final one once
	// sealed.
	Checkpoint []byte
}

// ChainOptions tunes VerifyChain: VerifyOptions for each shard, but the
// state file, which is StatePath(origin) for each shard's origin ("" for
// none).
type ChainOptions struct {
	VerifyOptions
	StatePath func(origin string) string
}

// ChainReport is what VerifyChain checked: one Report per shard verified,
// in chain order.
type ChainReport struct {
	Shards []Report
}

// VerifyChain audits a log sharded by time, whose base origin is v's name
// and whose shards are listed in shards, oldest first; open returns the
// Source of a shard by name. It verifies every shard with Verify (each
// against v's key under the shard's origin, with its own state file, so
// incrementally), and that the shards form one chain:
//   - each shard's origin is the base origin, "/", its name (the first may
//     be UnshardedName under the base origin itself); names grow; only the
//     last may be open;
//   - each shard's first entry is a ShardStarted that carries exactly the
//     previous shard's final checkpoint as verified: same origin, the
//     previous shard's start, size and root, signed by the log key (the
//     first shard links to none), checked when that entry is verified;
//   - a sealed shard's verified checkpoint is its seal: a shard that
//     continues after its seal, or is truncated, does not match the link;
//   - a sealed shard is followed by the same shard on every run: the state
//     keeps each sealed shard's successor (StatePath(origin)+".next"), and
//     another one is a split view.
//
// It returns the first failure (ErrBrokenChain for the chain), with the
// reports of the shards verified so far.
func VerifyChain(ctx context.Context, shards []ShardInfo, open func(name string) (Source, error), v *Verifier, opts ChainOptions) (ChainReport, error) {
	var rep ChainReport
	if err := checkList(shards, v.Name()); err != nil {
		return rep, err
	}
	var prev *ShardSeal
	var start uint64
	for i, sh := range shards {
		if prev != nil {
			start = prev.Start + prev.Size
		}
		sv, err := v.Renamed(sh.Origin)
		if err != nil {
			return rep, err
		}
		if sh.Archived {
			seal, err := archivedSeal(sh, sv, opts.StatePath, start, opts.Context)
			if err != nil {
				return rep, err
			}
			rep.Shards = append(rep.Shards, Report{Origin: sh.Origin, Size: seal.Size, Root: seal.Root,
				HadState: true, PreviousSize: seal.Size, FirstBad: -1})
			if err := keepSuccessor(opts.StatePath, prev, sh.Origin); err != nil {
				return rep, err
			}
			prev = seal
			continue
		}
		src, err := open(sh.Name)
		if err != nil {
			return rep, fmt.Errorf("audit: shard %s: %w", sh.Name, err)
		}
		o := opts.VerifyOptions
		if opts.StatePath != nil {
			o.StatePath = opts.StatePath(sh.Origin)
		}
		o.OnEntry = linkChecker(sh, prev, v, opts.OnEntry)
		r, err := Verify(ctx, src, sv, o)
		rep.Shards = append(rep.Shards, r)
		if err != nil {
			return rep, fmt.Errorf("shard %s: %w", sh.Name, err)
		}
		if err := keepSuccessor(opts.StatePath, prev, sh.Origin); err != nil {
			return rep, err
		}
		if i < len(shards)-1 || sh.Sealed {
			prev = &ShardSeal{Origin: sh.Origin, Start: start, Size: r.Size, Root: r.Root}
		}
	}
	return rep, nil
}

// archivedSeal returns the seal of archived shard sh, starting at start,
// from the auditor's state of it, which must hold its final checkpoint:
// its entries are no longer served, so only an auditor that verified them
// (from the server before, or from the export) can go on past it.
// The OnEntry checker's context goes on from the state's (c, if not nil).
func archivedSeal(sh ShardInfo, v *Verifier, statePath func(string) string, start uint64, c Context) (*ShardSeal, error) {
	verifyExport := fmt.Sprintf("verify its export first (sigil audit verify --dir EXPORT --shard %s), then the chain", sh.Name)
	if !sh.Sealed {
		return nil, fmt.Errorf("%w: shard %s is archived but not sealed", ErrBrokenChain, sh.Name)
	}
	path := ""
	if statePath != nil {
		path = statePath(sh.Origin)
	}
	if path == "" {
		return nil, fmt.Errorf("audit: shard %s is archived (its entries are no longer served) and there is no state: %s", sh.Name, verifyExport)
	}
	st, err := loadState(path, v)
	if err != nil {
		return nil, err
	}
	if st == nil {
		return nil, fmt.Errorf("audit: shard %s is archived (its entries are no longer served) and this auditor has not verified it: %s", sh.Name, verifyExport)
	}
	final, err := OpenCheckpoint(sh.Checkpoint, v)
	if err != nil {
		return nil, fmt.Errorf("%w: archived shard %s: its final checkpoint: %w", ErrBrokenChain, sh.Name, err)
	}
	if final.Size != st.cp.Size || !sameHash(final.Hash, st.cp.Hash) {
		return nil, fmt.Errorf("audit: shard %s is archived, and this auditor verified %d of its entries, not its final %d: %s", sh.Name, st.cp.Size, final.Size, verifyExport)
	}
	if c != nil && st.context != nil {
		if err := c.UnmarshalBinary(st.context); err != nil {
			return nil, fmt.Errorf("audit: shard %s: the state's checker context: %w", sh.Name, err)
		}
	}
	return &ShardSeal{Origin: sh.Origin, Start: start, Size: st.cp.Size, Root: st.cp.Hash}, nil
}

// checkList checks the listing of shards against the base origin.
func checkList(shards []ShardInfo, base string) error {
	if len(shards) == 0 {
		return fmt.Errorf("%w: no shards listed", ErrBrokenChain)
	}
	for i, sh := range shards {
		want, err := ShardOrigin(base, sh.Name)
		if i == 0 && sh.Name == UnshardedName {
			want, err = base, nil
		}
		switch {
		case err != nil:
			return fmt.Errorf("%w: shard %d: %w", ErrBrokenChain, i, err)
		case sh.Origin != want:
			return fmt.Errorf("%w: shard %s has origin %q, want %q", ErrBrokenChain, sh.Name, sh.Origin, want)
		case i > 0 && shards[i-1].Name != UnshardedName && sh.Name <= shards[i-1].Name:
			return fmt.Errorf("%w: shard %s listed after shard %s (reordered or repeated)", ErrBrokenChain, sh.Name, shards[i-1].Name)
		case i > 0 && sh.Name == UnshardedName:
			return fmt.Errorf("%w: the unsharded log listed after shard %s", ErrBrokenChain, shards[i-1].Name)
		case i < len(shards)-1 && !sh.Sealed:
			return fmt.Errorf("%w: shard %s is open, but shard %s follows it", ErrBrokenChain, sh.Name, shards[i+1].Name)
		}
	}
	return nil
}

// linkChecker returns the OnEntry of shard sh's Verify: next, and for its
// first entry CheckLink against prev (the unsharded log has no link).
func linkChecker(sh ShardInfo, prev *ShardSeal, v *Verifier, next func(uint64, Entry) error) func(uint64, Entry) error {
	return func(i uint64, e Entry) error {
		if i == 0 && sh.Name != UnshardedName {
			if _, err := CheckLink(e, sh.Name, sh.Origin, prev, v); err != nil {
				return err
			}
		}
		if next != nil {
			return next(i, e)
		}
		return nil
	}
}

// keepSuccessor records that the sealed shard prev, as verified, is
// followed by the shard of origin next, or checks that it was before, for
// the runs that do not read next's first entry again (incremental): a
// successor that changed is a split view (two shards claiming one
// predecessor), a seal that changed a shard that went on after its seal.
func keepSuccessor(statePath func(string) string, prev *ShardSeal, next string) error {
	if prev == nil || statePath == nil || statePath(prev.Origin) == "" {
		return nil
	}
	path := statePath(prev.Origin) + ".next"
	line := fmt.Sprintf("%s %d %x", next, prev.Size, prev.Root)
	old, err := readCapped(path, 4<<10)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return atomicfile.WriteMode(path, []byte(line+"\n"), 0o600)
	case err != nil:
		return fmt.Errorf("audit: read %s: %w", path, err)
	}
	fields := strings.Fields(string(old))
	switch {
	case len(fields) != 3:
		return fmt.Errorf("audit: %s: malformed (want: next origin, size, root)", path)
	case fields[0] != next:
		return fmt.Errorf("%w: split view: shard %s was followed by %s in an earlier run (%s), now by %s", ErrBrokenChain, prev.Origin, fields[0], path, next)
	case strings.Join(fields, " ") != line:
		return fmt.Errorf("%w: shard %s was sealed at %s entries with root %s in an earlier run (%s), now has %d with root %x (continued after its seal)", ErrBrokenChain, prev.Origin, fields[1], fields[2], path, prev.Size, prev.Root)
	}
	return nil
}
