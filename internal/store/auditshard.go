package store

import (
	"context"
	"crypto"
	"fmt"
	"slices"
	"time"

	"github.com/sigil-dev/sigil/audit"
)

// ShardLog is one shard of the audit log as the audit package's Storage:
// the entries from the shard's Start, at shard-local indices, its own
// tree's nodes, and its checkpoints, stored under their global end. A
// sealed shard ends at End; the current one at the log's size.
type ShardLog struct {
	rw interface {
		AuditReader
		AuditWriter
	}
	Shard  AuditShard
	End    uint64 // global end of a sealed shard
	Sealed bool
}

var (
	_ audit.Storage          = ShardLog{}
	_ audit.CheckpointLister = ShardLog{}
	_ audit.NodeHashReader   = ShardLog{}
	_ audit.Finder           = ShardLog{}
)

// ShardStorage returns shard sh of the audit log of st, a Store or a Tx;
// sealed, ending at global index end, unless end is 0.
func ShardStorage(st interface {
	AuditReader
	AuditWriter
}, sh AuditShard, end uint64) ShardLog {
	return ShardLog{rw: st, Shard: sh, End: end, Sealed: end > 0}
}

// Size is the shard's number of entries.
func (l ShardLog) Size(ctx context.Context) (uint64, error) {
	n, err := l.rw.AuditSize(ctx)
	if err != nil {
		return 0, err
	}
	if l.Sealed {
		n = min(n, l.End)
	}
	if n < l.Shard.Start {
		return 0, nil
	}
	return n - l.Shard.Start, nil
}

// bound checks that [start, end) is in a sealed shard.
func (l ShardLog) bound(what string, start, end uint64) error {
	if l.Sealed && l.Shard.Start+end > l.End {
		return fmt.Errorf("store: audit shard %s: %s [%d, %d): the shard has %d entries: %w",
			l.Shard.Name, what, start, end, l.End-l.Shard.Start, ErrNotFound)
	}
	return nil
}

// LeafHashes is AuditLeafHashes at shard-local indices.
func (l ShardLog) LeafHashes(ctx context.Context, start, end uint64) ([][]byte, error) {
	if err := l.bound("leaf hashes", start, end); err != nil {
		return nil, err
	}
	return l.rw.AuditLeafHashes(ctx, l.Shard.Start+start, l.Shard.Start+end)
}

// Entries is AuditEntries at shard-local indices.
func (l ShardLog) Entries(ctx context.Context, start, end uint64) ([][]byte, error) {
	if err := l.bound("entries", start, end); err != nil {
		return nil, err
	}
	return l.rw.AuditEntries(ctx, l.Shard.Start+start, l.Shard.Start+end)
}

// NodeHashes is AuditShardNodeHashes of the shard.
func (l ShardLog) NodeHashes(ctx context.Context, level uint, start, end uint64) ([][]byte, error) {
	if err := l.bound("nodes", start<<level, end<<level); err != nil {
		return nil, err
	}
	return l.rw.AuditShardNodeHashes(ctx, l.Shard.Start, level, start, end)
}

// Find returns the shard-local index of the entry appended with key; an
// entry of another shard is ErrNotFound.
func (l ShardLog) Find(ctx context.Context, key string) (uint64, error) {
	i, err := l.rw.AuditIndex(ctx, key)
	if err != nil {
		return 0, err
	}
	if i < l.Shard.Start || (l.Sealed && i >= l.End) {
		return 0, fmt.Errorf("store: audit key %q: in another shard than %s: %w", key, l.Shard.Name, ErrNotFound)
	}
	return i - l.Shard.Start, nil
}

// LatestCheckpoint returns the shard's latest checkpoint note, or nil.
func (l ShardLog) LatestCheckpoint(ctx context.Context) ([]byte, error) {
	if l.Sealed {
		cs, err := l.checkpoints(ctx)
		if err != nil || len(cs) == 0 {
			return nil, err
		}
		return cs[len(cs)-1].Note, nil
	}
	note, err := l.rw.LatestCheckpoint(ctx)
	if err != nil || note == nil {
		return nil, err
	}
	// The latest checkpoint is the current shard's, unless it has none
	// yet: then it is of an earlier shard, with another origin.
	cp, err := audit.PeekCheckpoint(note)
	if err != nil || cp.Origin != l.Shard.Origin {
		return nil, nil
	}
	return note, nil
}

// PutCheckpoint stores the checkpoint of the shard's first size entries,
// under its global end.
func (l ShardLog) PutCheckpoint(ctx context.Context, size uint64, note []byte) error {
	if l.Sealed && l.Shard.Start+size != l.End {
		return fmt.Errorf("store: put checkpoint %d of sealed audit shard %s: %w", size, l.Shard.Name, ErrConflict)
	}
	return l.rw.PutCheckpoint(ctx, l.Shard.Start+size, note)
}

// checkpoints returns the shard's checkpoints, at shard-local sizes.
func (l ShardLog) checkpoints(ctx context.Context) ([]Checkpoint, error) {
	all, err := l.rw.Checkpoints(ctx)
	if err != nil {
		return nil, err
	}
	var cs []Checkpoint
	for _, c := range all {
		if c.Size > l.Shard.Start && (!l.Sealed || c.Size <= l.End) {
			cs = append(cs, Checkpoint{Size: c.Size - l.Shard.Start, Note: c.Note})
		}
	}
	return cs, nil
}

// Checkpoints returns the notes of the shard's checkpoints, smallest
// first.
func (l ShardLog) Checkpoints(ctx context.Context) ([][]byte, error) {
	cs, err := l.checkpoints(ctx)
	if err != nil {
		return nil, err
	}
	return notes(cs), nil
}

// Cosignatures is the Store's Cosignatures of the shard's checkpoint of
// size.
func (l ShardLog) Cosignatures(ctx context.Context, size uint64) ([][]byte, error) {
	return l.rw.Cosignatures(ctx, l.Shard.Start+size)
}

// AddCosignature is the Store's AddCosignature for the shard's checkpoint
// of size.
func (l ShardLog) AddCosignature(ctx context.Context, size uint64, witness string, line []byte) error {
	return l.rw.AddCosignature(ctx, l.Shard.Start+size, witness, line)
}

// UnshardedName is audit.UnshardedName.
const UnshardedName = audit.UnshardedName

// Shards returns the shards of the audit log of st, by start, each with
// its global end (0 for the current one). A log sharded after it had
// entries has an implicit first shard: its entries from 0 under the base
// origin, named UnshardedName. No shard is a log not sharded.
func Shards(ctx context.Context, st AuditReader, base string) ([]AuditShard, []uint64, error) {
	rows, err := st.AuditShards(ctx)
	if err != nil || len(rows) == 0 {
		return nil, nil, err
	}
	if rows[0].Start > 0 {
		rows = append([]AuditShard{{Name: UnshardedName, Origin: base}}, rows...)
	}
	archived, err := st.AuditArchived(ctx)
	if err != nil {
		return nil, nil, err
	}
	ends := make([]uint64, len(rows))
	for i := range rows[:len(rows)-1] {
		ends[i] = rows[i+1].Start
	}
	for i := range rows {
		rows[i].Archived = slices.Contains(archived, rows[i].Start)
	}
	return rows, ends, nil
}

// StartShard rotates the audit log of st to a new shard named name, in
// one transaction: it fixes the current shard's end M under the append
// ordering (StartAuditShard), signs the current shard's final checkpoint
// of its entries up to M with key, under the current shard's origin (or
// keeps the one stored at M), stores it, and appends the new shard's first
// entry, an audit.ShardStarted carrying it. base is the log's origin: the
// unsharded log's, and the prefix of the shards' (audit.ShardOrigin).
// Nothing lands in the old shard afterwards; if anything fails, nothing of
// it is stored. The HSM signature is made inside the transaction, which
// then holds the log's append lock for its few milliseconds, once a
// period.
func StartShard(ctx context.Context, st Store, key crypto.Signer, base, name string, now time.Time) (AuditShard, error) {
	origin, err := audit.ShardOrigin(base, name)
	if err != nil {
		return AuditShard{}, err
	}
	var sh AuditShard
	err = st.Tx(ctx, func(tx Tx) error {
		start, err := tx.StartAuditShard(ctx, name, origin, now)
		if err != nil {
			return err
		}
		// Under the head's lock from here: what precedes start is final.
		shards, _, err := Shards(ctx, tx, base)
		if err != nil {
			return err
		}
		var prev *AuditShard // the unsharded log's included (Shards)
		if n := len(shards); n > 1 {
			prev = &shards[n-2]
		}
		sh = AuditShard{Start: start, Name: name, Origin: origin, CreatedAt: now.UTC()}
		link := audit.ShardLink{Name: name, Origin: origin}
		if prev != nil {
			if link.Previous, err = seal(ctx, tx, key, *prev, start, now); err != nil {
				return err
			}
		}
		e, err := NewAuditEntry(audit.ShardStarted, now, link, "shard:"+name)
		if err != nil {
			return err
		}
		return AppendAuditEntries(ctx, tx, e)
	})
	if err != nil {
		return AuditShard{}, fmt.Errorf("store: start audit shard %q: %w", name, err)
	}
	return sh, nil
}

// seal returns the seal of shard prev, ending at global index end: its
// final checkpoint, the one stored at end or one signed now with key.
func seal(ctx context.Context, tx Tx, key crypto.Signer, prev AuditShard, end uint64, now time.Time) (*audit.ShardSeal, error) {
	view := ShardStorage(tx, prev, end)
	size := end - prev.Start
	root, err := audit.RootHash(ctx, view, size)
	if err != nil {
		return nil, fmt.Errorf("seal shard %q: %w", prev.Origin, err)
	}
	// The latest stored checkpoint (one read, not a list: the lock is
	// held) is the shard's final one if the publisher signed it already.
	note, err := tx.LatestCheckpoint(ctx)
	if err != nil {
		return nil, err
	}
	if cp, perr := audit.PeekCheckpoint(note); note == nil || perr != nil || cp.Origin != prev.Origin || cp.Size != size {
		signer, err := audit.NewSigner(prev.Origin, key)
		if err != nil {
			return nil, err
		}
		if note, err = signer.Sign(audit.Checkpoint{Origin: prev.Origin, Size: size, Hash: root, Time: now}); err != nil {
			return nil, fmt.Errorf("seal shard %q: %w", prev.Origin, err)
		}
		if err := view.PutCheckpoint(ctx, size, note); err != nil {
			return nil, fmt.Errorf("seal shard %q: %w", prev.Origin, err)
		}
	}
	return &audit.ShardSeal{Origin: prev.Origin, Start: prev.Start, Size: size, Root: root, Checkpoint: string(note)}, nil
}

// CheckShardOrigin is the backends' check, in PutCheckpoint, that a
// checkpoint stored at a global size belongs to the shard holding the
// entries it ends with: shard is that shard's origin (nil before the first
// shard), and the note must be of it. So a replica that has not yet seen a
// rotation cannot sign its old shard past the seal: ErrConflict.
func CheckShardOrigin(note []byte, shard *string) error {
	if shard == nil {
		return nil
	}
	cp, err := audit.PeekCheckpoint(note)
	if err != nil {
		return err
	}
	if cp.Origin != *shard {
		return fmt.Errorf("a checkpoint of %q, but these entries are shard %q's (sealed since): %w", cp.Origin, *shard, ErrConflict)
	}
	return nil
}
