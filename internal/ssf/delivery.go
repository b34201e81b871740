package ssf

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"

	"github.com/sigil-dev/sigil/internal/store"
)

// The delivery position of a stream is kept in its store.Stream, read and
// written under LockStream in one transaction per exchange, so that polls
// on several replicas and the pusher never lose an acknowledgement:
//
//   - every revocation event with Seq <= Cursor is done for the stream;
//   - Acked holds the events above Cursor acknowledged out of order;
//   - Delivered is the last event handed out: an acknowledgement of a
//     later one is not of an event the receiver was given, and is ignored,
//     as is one of a jti that is not the stream's;
//   - an event of a type the stream does not receive is done as soon as
//     it is passed over;
//   - an event handed out and not acknowledged is handed out again by the
//     next exchange, after a restart or on another replica alike.

// Bounds of one exchange.
const (
	maxAcks     = 2 * MaxEvents // acknowledgements and setErrs in one request
	maxJTI      = 256
	maxScanned  = 10 * store.MaxRevocationEvents // events passed over per exchange
	ackedWarned = store.MaxStreamAcked / 2
)

// exchange is what a receiver (or the pusher) sends: acknowledgements,
// SETs it refused (done like acknowledged ones, and logged), and how many
// SETs it takes now.
type exchange struct {
	acks []string
	errs map[string]SetErr
	max  int
}

// batch is what an exchange hands out.
type batch struct {
	stream  store.Stream
	config  storedConfig
	removed []subject // config's removed subjects, parsed
	epoch   string
	items   []pending
	more    bool
}

// deliver runs one exchange on stream id, which must be delivered by
// method; owner, if not empty, must own it.
func (t *Transmitter) deliver(ctx context.Context, id, owner, method string, x exchange) (batch, error) {
	var b batch
	err := t.cfg.Store.Tx(ctx, func(tx store.Tx) error {
		b = batch{}
		s, err := tx.LockStream(ctx, id)
		switch {
		case errors.Is(err, store.ErrNotFound) || (err == nil && owner != "" && s.Receiver != owner):
			return errNoStream
		case err != nil:
			return err
		}
		if b.config, err = decodeConfig(s); err != nil {
			return err
		}
		if b.removed, err = b.config.removedSubjects(); err != nil {
			return fmt.Errorf("ssf: stream %s: %w", s.ID, err)
		}
		if b.config.Delivery.Method != method {
			return errMethod
		}
		if b.epoch, err = tx.Epoch(ctx); err != nil {
			return err
		}
		t.acknowledge(ctx, &s, b.epoch, x)
		if err := advance(ctx, tx, &s); err != nil {
			return err
		}
		switch b.config.status().Status {
		case StatusEnabled:
			err = t.collect(ctx, tx, &s, &b, x.max)
		case StatusDisabled:
			err = drop(ctx, tx, &s)
		} // paused: held
		if err != nil {
			return err
		}
		if err := advance(ctx, tx, &s); err != nil {
			return err
		}
		if len(s.Acked) > store.MaxStreamAcked {
			return &Error{Status: http.StatusConflict, Code: "too_many_unacknowledged",
				Description: "too many events acknowledged after an unacknowledged one: acknowledge the oldest events first"}
		}
		b.stream = s
		return tx.UpdateStream(ctx, s)
	})
	if len(b.stream.Acked) > ackedWarned {
		t.log.WarnContext(ctx, "ssf: a stream's receiver leaves an old event unacknowledged", "stream", id, "acked", len(b.stream.Acked))
	}
	return b, err
}

// acknowledge records x's acknowledgements and refusals in s.
func (t *Transmitter) acknowledge(ctx context.Context, s *store.Stream, epoch string, x exchange) {
	done := func(jti string) {
		n, verify, ok := parseJTI(jti, s.ID, epoch)
		switch {
		case !ok:
			t.log.DebugContext(ctx, "ssf: acknowledgement of no SET of the stream ignored", "stream", s.ID, "jti", jti)
		case verify:
			if n == s.VerificationID && n > s.VerificationDone {
				s.VerificationDone = n
			}
		case n > s.Cursor && n <= s.Delivered:
			if i, found := slices.BinarySearch(s.Acked, n); !found {
				s.Acked = slices.Insert(s.Acked, i, n)
			}
		}
	}
	for _, jti := range x.acks {
		done(jti)
	}
	for jti, e := range x.errs {
		t.log.WarnContext(ctx, "ssf: the receiver refused a SET", "stream", s.ID, "jti", jti, "err", e.Err, "description", e.Description)
		done(jti)
	}
}

// advance moves s.Cursor over the acknowledged events that follow it.
func advance(ctx context.Context, r store.RevocationFeed, s *store.Stream) error {
	for len(s.Acked) > 0 {
		events, err := r.RevocationEvents(ctx, s.Cursor, store.MaxRevocationEvents)
		if err != nil {
			return err
		}
		moved := false
		for _, e := range events {
			if _, found := slices.BinarySearch(s.Acked, e.Seq); !found {
				break
			}
			s.Cursor, moved = e.Seq, true
		}
		i, _ := slices.BinarySearch(s.Acked, s.Cursor+1)
		s.Acked = s.Acked[i:]
		if len(s.Acked) == 0 {
			s.Acked = nil
		}
		if !moved || len(events) < store.MaxRevocationEvents {
			return nil
		}
	}
	return nil
}

// collect hands out up to limit SETs: a pending verification first, then
// the unacknowledged events after the cursor, in order.
func (t *Transmitter) collect(ctx context.Context, r feedReader, s *store.Stream, b *batch, limit int) error {
	if limit <= 0 {
		return nil
	}
	if s.VerificationID > s.VerificationDone {
		b.items = append(b.items, pending{jti: verifyJTI(s.ID, s.VerificationID), verify: s.VerificationID, state: s.VerificationState})
	}
	after, scanned := s.Cursor, 0
	for {
		events, err := r.RevocationEvents(ctx, after, store.MaxRevocationEvents)
		if err != nil {
			return err
		}
		for i := range events {
			e := events[i]
			if len(b.items) >= limit {
				b.more = true
				return nil
			}
			after = e.Seq
			if _, found := slices.BinarySearch(s.Acked, e.Seq); found {
				continue
			}
			s.Delivered = max(s.Delivered, e.Seq)
			skip := !wants(b.config.EventsDelivered, e)
			var about *eventSubject
			if !skip && len(b.removed) > 0 {
				if about, err = t.subjectOf(ctx, r, e); err != nil {
					return err
				}
				skip = slices.ContainsFunc(b.removed, func(r subject) bool { return r.covers(about.subject) })
			}
			if skip {
				i, _ := slices.BinarySearch(s.Acked, e.Seq)
				s.Acked = slices.Insert(s.Acked, i, e.Seq)
				continue
			}
			b.items = append(b.items, pending{jti: eventJTI(s.ID, b.epoch, e.Seq), event: &e, about: about})
		}
		scanned += len(events)
		if len(events) < store.MaxRevocationEvents {
			return nil
		}
		if scanned >= maxScanned {
			b.more = true
			return nil
		}
	}
}

// feedReader reads the revocation feed and the certificates its events
// name.
type feedReader interface {
	store.RevocationFeed
	certificates
}

// signed signs b's items for its stream, in order.
func (t *Transmitter) signed(ctx context.Context, b batch) ([]string, error) {
	sets := make([]string, 0, len(b.items))
	for _, p := range b.items {
		set, err := t.sign(ctx, b.stream, b.config.Aud, b.epoch, p)
		if err != nil {
			return nil, fmt.Errorf("ssf: stream %s: %w", b.stream.ID, err)
		}
		sets = append(sets, set)
	}
	return sets, nil
}
