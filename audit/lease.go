package audit

import (
	"context"
	"errors"
	"fmt"
)

// Lease decides which of several Logs over one Storage (replicas) signs
// checkpoints: one at a time. Storage.PutCheckpoint's fence stays the last
// line, for a leader that pauses between asking and storing.
type Lease interface {
	// Leading reports whether this Log may sign now, taking the lease if
	// it is free. false without an error is another Log leading.
	Leading(ctx context.Context) (bool, error)
}

// WithLease makes the Log sign a checkpoint only while lease says it
// leads, asking just before each signature. Otherwise it follows: it
// adopts the checkpoints the leader stores, after checking their
// signature and that they are checkpoints of the entries it integrated
// (else ErrTampered). Without it the Log always leads.
func WithLease(lease Lease) Option { return func(o *options) { o.lease = lease } }

// leading asks the lease, if any.
func (l *Log) leading(ctx context.Context) (bool, error) {
	if l.o.lease == nil {
		return true, nil
	}
	ok, err := l.o.lease.Leading(ctx)
	if err != nil {
		return false, fmt.Errorf("audit: checkpoint lease: %w", err)
	}
	l.m.leading(ok)
	return ok, nil
}

// follow adopts the latest stored checkpoint if it covers more than the
// one published: signed by the log key, for entries stored, and with the
// root of the tree of those entries as this Log integrates them.
func (l *Log) follow(ctx context.Context) error {
	note, cp, err := l.storedCheckpoint(ctx)
	if err != nil {
		if errors.Is(err, ErrTampered) {
			return err
		}
		return l.failed(ctx, stageRead, err)
	}
	if size, has := l.current(); note == nil || (has && cp.Size <= size) {
		return nil
	}
	if l.rng.End() < cp.Size {
		if err := l.extend(ctx, cp.Size); err != nil {
			if errors.Is(err, ErrTampered) {
				return err
			}
			return l.failed(ctx, stageRead, err)
		}
	}
	if err := l.sameTree(ctx, cp); err != nil {
		return err
	}
	l.publish(note, cp.Size)
	l.m.observe(cp.Size, l.rng.End())
	return nil
}

// sameTree checks that cp's root is the root of the first cp.Size entries
// integrated (l.rng.End() >= cp.Size): directly, or by a consistency proof
// from the storage's hashes, which extend checked, to the integrated root.
func (l *Log) sameTree(ctx context.Context, cp Checkpoint) error {
	end := l.rng.End()
	if end == cp.Size {
		if !sameHash(rootOf(l.rng), cp.Hash) {
			return fmt.Errorf("%w: the stored checkpoint of size %d does not have the root of the entries", ErrTampered, cp.Size)
		}
		return nil
	}
	p, err := ConsistencyProof(ctx, l.storage, cp.Size, end)
	if err != nil {
		return l.failed(ctx, stageRead, err)
	}
	if err := VerifyConsistency(cp.Size, end, p, cp.Hash, rootOf(l.rng)); err != nil {
		return fmt.Errorf("%w: the stored checkpoint of size %d is not of the entries: %w", ErrTampered, cp.Size, err)
	}
	return nil
}
