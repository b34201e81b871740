package audit

import (
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

// CheckLink checks that first, the first entry of the shard named name
// with origin, links to prev: it is a ShardStarted for that name and
// origin whose Previous is prev's origin, start and size, with a final
// checkpoint signed by v under prev's origin that has exactly that size
// and root. prev is nil for the first shard of a log sharded from its first
// entry, which must link to nothing. It returns the link.
func CheckLink(first []byte, name, origin string, prev *ShardSeal, v *Verifier) (ShardLink, error) {
	e, err := Decode(first)
	if err != nil {
		return ShardLink{}, fmt.Errorf("%w: shard %s: first entry: %w", ErrBrokenChain, name, err)
	}
	if e.Kind != ShardStarted {
		return ShardLink{}, fmt.Errorf("%w: shard %s: first entry is %s, not %s", ErrBrokenChain, name, e.Kind, ShardStarted)
	}
	p, err := e.Payload()
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
		return link, fmt.Errorf("%w: shard %s: seals %q at %d entries with root %x, but that shard has %d entries with root %x", ErrBrokenChain, name, prev.Origin, got.Size, got.Root, prev.Size, prev.Root)
	}
	return link, nil
}

// Renamed returns v's key under another name: the verifier of another
// shard of the same log (the log key signs every shard's checkpoints).
func (v *Verifier) Renamed(name string) (*Verifier, error) {
	return NewVerifier(name, v.pub)
}
