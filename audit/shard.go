package audit

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// MinShardPeriod is the shortest period a log is sharded by in service:
// shorter periods make more shards than auditors want to follow. Tests may
// go down to MinTestShardPeriod.
const MinShardPeriod = time.Hour

// MinTestShardPeriod is the shortest period a test may shard by.
const MinTestShardPeriod = time.Second

// ShardName names the shard of a log sharded by period that starts the
// period containing t: the period's start in UTC, to the second when the
// period is not a whole number of hours ("2026-12-06T00Z",
// "2026-12-06T14:03:20Z"). Names sort as their periods do, and are valid
// in an origin (no spaces, no '+').
func ShardName(t time.Time, period time.Duration) string {
	start := t.UTC().Truncate(period)
	if period%time.Hour == 0 {
		return start.Format("2006-01-02T15Z")
	}
	return start.Format("2006-01-02T15:04:05Z")
}

// ShardOrigin returns the origin of shard name of the log with origin
// base: base, "/", name (audit.Origin's "a shard appends its name").
func ShardOrigin(base, name string) (string, error) {
	if name == "" || strings.ContainsAny(name, "/ +\n") {
		return "", fmt.Errorf("audit: shard name %q: want a non-empty name without '/', spaces or '+'", name)
	}
	origin := strings.TrimSuffix(base, "/") + "/" + name
	if !validName(origin) {
		return "", fmt.Errorf("audit: shard origin %q: want a non-empty line without spaces or '+'", origin)
	}
	return origin, nil
}

// ErrBrokenChain: the shards of a log do not link up: a shard's first
// entry is not a ShardStarted committing to exactly the previous shard's
// final checkpoint, or a shard goes on after its seal.
var ErrBrokenChain = errors.New("audit: broken shard chain")

// UnshardedName names the implicit first shard of a log sharded after it
// had entries: those entries, under the log's own origin. Shard names
// (ShardName) start with a digit, so it names no other.
const UnshardedName = "unsharded"

// CheckLink checks that first, the first entry of the shard named name
// with origin, links to prev: it is a ShardStarted for that name and
// origin whose Previous is prev's origin, start, size and root, with a
// final checkpoint signed by v's key under prev's origin of exactly that
// size and root. prev is nil for the first shard of a log sharded from
// its first entry, which must link to nothing. It returns the link.
func CheckLink(first Entry, name, origin string, prev *ShardSeal, v *Verifier) (ShardLink, error) {
	if first.Kind != ShardStarted {
		return ShardLink{}, fmt.Errorf("%w: shard %s: first entry is %s, not %s", ErrBrokenChain, name, first.Kind, ShardStarted)
	}
	p, err := first.Payload()
	if err != nil {
		return ShardLink{}, fmt.Errorf("%w: shard %s: first entry: %w", ErrBrokenChain, name, err)
	}
	link := *p.(*ShardLink)
	switch {
	case link.Name != name || link.Origin != origin:
		return link, fmt.Errorf("%w: shard %s: its first entry names shard %q with origin %q, want %q", ErrBrokenChain, name, link.Name, link.Origin, origin)
	case prev == nil && link.Previous != nil:
		return link, fmt.Errorf("%w: shard %s: links to shard %q, but it is the first", ErrBrokenChain, name, link.Previous.Origin)
	case prev == nil:
		return link, nil
	case link.Previous == nil:
		return link, fmt.Errorf("%w: shard %s: does not link to the previous shard %q", ErrBrokenChain, name, prev.Origin)
	}
	got := link.Previous
	if got.Origin != prev.Origin || got.Start != prev.Start {
		return link, fmt.Errorf("%w: shard %s: links to shard %q at %d, want %q at %d", ErrBrokenChain, name, got.Origin, got.Start, prev.Origin, prev.Start)
	}
	pv, err := v.Renamed(got.Origin)
	if err != nil {
		return link, err
	}
	cp, err := OpenCheckpoint([]byte(got.Checkpoint), pv)
	if err != nil {
		return link, fmt.Errorf("%w: shard %s: the previous shard's final checkpoint: %w", ErrBrokenChain, name, err)
	}
	switch {
	case cp.Size != got.Size || !sameHash(cp.Hash, got.Root):
		return link, fmt.Errorf("%w: shard %s: the link says %d entries with root %x, its checkpoint %d with root %x", ErrBrokenChain, name, got.Size, got.Root, cp.Size, cp.Hash)
	case got.Size != prev.Size || !sameHash(got.Root, prev.Root):
		return link, fmt.Errorf("%w: shard %s: seals %q at %d entries with root %x, but that shard has %d entries with root %x (truncated, or continued after its seal)", ErrBrokenChain, name, prev.Origin, got.Size, got.Root, prev.Size, prev.Root)
	}
	return link, nil
}

// Renamed returns v's key under another name: the verifier of another
// shard of the same log (the log key signs every shard's checkpoints).
func (v *Verifier) Renamed(name string) (*Verifier, error) {
	return NewVerifier(name, v.pub)
}

// Next returns the Log of the next shard of l's log: storage and signer
// are the new shard's (signer named origin, its origin), with l's options
// and metrics. Run it in place of l once l's shard is sealed.
func (l *Log) Next(storage Storage, signer *Signer, origin string) (*Log, error) {
	switch {
	case storage == nil || signer == nil:
		return nil, errors.New("audit: next shard's log: nil storage or signer")
	case signer.Name() != origin:
		return nil, fmt.Errorf("audit: next shard's log: origin %q, but the signer's key is named %q", origin, signer.Name())
	}
	return &Log{storage: storage, signer: signer, origin: origin, o: l.o, m: l.m,
		nudge: make(chan struct{}, 1), changed: make(chan struct{})}, nil
}

// Sealed is a sealed shard served read-only (C2SP tlog-tiles): its final
// checkpoint and the tiles and entry bundles under it, which never change.
type Sealed struct {
	storage Storage
	note    []byte
	size    uint64
}

// NewSealed returns the sealed shard of storage with final checkpoint
// note, which v (the log key under the shard's origin) must have signed.
func NewSealed(storage Storage, note []byte, v *Verifier) (*Sealed, error) {
	cp, err := OpenCheckpoint(note, v)
	if err != nil {
		return nil, fmt.Errorf("audit: sealed shard %s: %w", v.Name(), err)
	}
	return &Sealed{storage: storage, note: note, size: cp.Size}, nil
}

// Checkpoint returns the shard's final checkpoint.
func (s *Sealed) Checkpoint(context.Context) ([]byte, error) { return s.note, nil }

// Immutable reports that the shard's tiles and bundles never change, the
// partial ones at its end included.
func (s *Sealed) Immutable() bool { return true }

// Tile returns hash tile t of the shard.
func (s *Sealed) Tile(ctx context.Context, t Tile) ([]byte, error) {
	return HashTile(ctx, s.storage, t, s.size)
}

// EntryBundle returns entry bundle t of the shard.
func (s *Sealed) EntryBundle(ctx context.Context, t Tile) ([]byte, error) {
	return entryBundle(ctx, s.storage, t, s.size)
}

// Origin returns the log's origin.
func (l *Log) Origin() string { return l.origin }
