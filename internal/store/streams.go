package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Stream is an OpenID Shared Signals stream (internal/ssf): one
// receiver's subscription to the revocation feed, kept in the database
// with its delivery position so that it survives a restart and every
// replica serves it alike.
//
// Events with Seq <= Cursor are done for the stream (acknowledged, or not
// of a type it receives); those in Acked, above Cursor, are acknowledged
// too. Delivered (>= Cursor) is the largest Seq handed to the receiver: an
// acknowledgement above it is not one of an event it was given.
type Stream struct {
	ID        string // random, chosen by the caller; primary key
	Receiver  string // the SPIFFE ID of the receiver that owns the stream
	Config    []byte // opaque JSON: the stream's configuration, owned by the caller
	CreatedAt time.Time

	Cursor    uint64
	Delivered uint64
	Acked     []uint64 // sorted, each above Cursor; empty reads back as nil

	// VerificationID numbers the receiver's verification requests; the
	// last one, with VerificationState, is pending while VerificationDone
	// (the last delivered and acknowledged) is below it.
	VerificationID    uint64
	VerificationState string
	VerificationDone  uint64
}

// MaxStreamAcked bounds Stream.Acked: a stream whose receiver acknowledges
// out of order past it is refused an update (ErrConflict), so that one
// receiver cannot grow its row without bound.
const MaxStreamAcked = 10_000

// Check reports what makes s unfit to be stored; backends call it before
// they write s.
func (s Stream) Check() error {
	switch {
	case s.ID == "" || s.Receiver == "":
		return errors.New("no id or receiver")
	case len(s.Config) == 0:
		return errors.New("no configuration")
	case s.Delivered < s.Cursor:
		return fmt.Errorf("delivered %d before cursor %d", s.Delivered, s.Cursor)
	case len(s.Acked) > MaxStreamAcked:
		return fmt.Errorf("%d acknowledged events above the cursor, at most %d", len(s.Acked), MaxStreamAcked)
	case !slices.IsSorted(s.Acked) || (len(s.Acked) > 0 && (s.Acked[0] <= s.Cursor || s.Acked[len(s.Acked)-1] > s.Delivered)):
		return errors.New("acknowledged events not sorted, above the cursor and delivered")
	case s.VerificationDone > s.VerificationID:
		return errors.New("verification done before it was requested")
	}
	return nil
}

// StreamReader reads Shared Signals streams.
type StreamReader interface {
	// Stream returns the stream id; ErrNotFound if there is none.
	Stream(ctx context.Context, id string) (Stream, error)
	// Streams lists every stream, by ID.
	Streams(ctx context.Context) ([]Stream, error)
}

// StreamWriter creates, updates and deletes Shared Signals streams.
type StreamWriter interface {
	// CreateStream stores a new stream unless its receiver already has
	// limit (> 0) streams, ErrLimit; a stored ID is ErrConflict. s must
	// pass s.Check. Count and insert are one step: CreateStreams of one
	// receiver, from any process, never leave it more than limit streams.
	CreateStream(ctx context.Context, s Stream, limit int) error
	// LockStream reads the stream id for update: in a Tx, another
	// LockStream of it, from any process, waits until the Tx ends, so that
	// read, change and UpdateStream in one Tx never lose a concurrent
	// change. ErrNotFound if there is none.
	LockStream(ctx context.Context, id string) (Stream, error)
	// UpdateStream replaces the stored stream s.ID (all but Receiver and
	// CreatedAt); ErrNotFound if there is none. s must pass s.Check.
	UpdateStream(ctx context.Context, s Stream) error
	// DeleteStream deletes the stream id; ErrNotFound if there is none.
	DeleteStream(ctx context.Context, id string) error
}
