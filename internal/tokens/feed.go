package tokens

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sigil-dev/sigil/internal/store"
)

// Event is one revocation event of the feed: Seq, the store's event
// sequence number, in the database lineage Epoch (store.Epoch), and SET,
// the signed Security Event Token. Its SSE id is ID.
type Event struct {
	Epoch string
	Seq   uint64
	SET   string
}

// ID is the event's SSE id, "<epoch>.<seq>": a subscriber sends it back as
// Last-Event-ID to resume after the event.
func (e Event) ID() string { return EventID(e.Epoch, e.Seq) }

// EventID is the SSE id of event seq of the feed of epoch.
func EventID(epoch string, seq uint64) string { return epoch + "." + strconv.FormatUint(seq, 10) }

// ErrResync: a subscriber's resume point (Last-Event-ID) is not on this
// feed: of another epoch (the database was restored, and the restore
// acknowledged), without an epoch, or ahead of the feed's head, so that
// resuming from it would skip events. Answer 409 Conflict; the subscriber
// resynchronises from the start (Last-Event-ID 0), keeping what it knows.
var ErrResync = errors.New("resume point not on the revocation feed: resynchronise from Last-Event-ID 0")

// Feed sizes. A resume from any point on the feed is served, Last-Event-ID
// 0 included (a verifier starting up), and costs one HSM signature per
// event not signed since the process started, never more while the event
// is among the recentEvents signed last: a resume reads the store (100
// events a read) and signs only what no subscriber needed before, and
// signatures of events not kept run one at a time, so that subscribers
// resuming together share them rather than each signing the backlog.
const (
	subscriberBuffer = 256   // events queued per subscriber before it is dropped
	recentEvents     = 65536 // signed events kept (about 40 MB at most)
	backlogPage      = 100   // events read from the store at a time on resume
)

type signFunc func(context.Context, store.RevocationEvent) (string, error)

// feed reads revocation events from the store in sequence order and hands
// them, signed, to its subscribers. The store's sequence is the only
// order: the store notifies the reader of revocations as they commit
// (store.FeedNotifier), and it polls for what notifications do not carry.
// An event is signed once, when first needed, and kept for resuming
// subscribers.
type feed struct {
	st       store.Reader
	sign     signFunc
	log      *slog.Logger
	interval time.Duration
	maxSubs  int
	kick     chan struct{}
	closed   chan struct{}
	closing  sync.Once
	signing  chan struct{} // held while an event is signed: one at a time

	mu      sync.Mutex
	started bool
	ended   bool
	epoch   string // the store's, read at start
	last    uint64 // the events up to last have been handed out
	subs    map[*Subscription]struct{}
	signed  map[uint64]string
	order   []uint64 // keys of signed, oldest first
}

func newFeed(st store.Reader, sign signFunc, log *slog.Logger, interval time.Duration, maxSubs int) *feed {
	return &feed{
		st: st, sign: sign, log: log, interval: interval, maxSubs: maxSubs,
		kick: make(chan struct{}, 1), closed: make(chan struct{}), signing: make(chan struct{}, 1),
		subs: map[*Subscription]struct{}{}, signed: map[uint64]string{},
	}
}

// wake has the feed read the store now.
func (f *feed) wake() {
	select {
	case f.kick <- struct{}{}:
	default:
	}
}

func (f *feed) run(ctx context.Context) error {
	defer f.end()
	for {
		err := f.start(ctx)
		if err == nil {
			break
		}
		f.log.WarnContext(ctx, "tokens: revocation feed cannot start", "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(f.interval):
		}
	}
	if n, ok := f.st.(store.FeedNotifier); ok {
		go f.follow(ctx, n)
	}
	t := time.NewTicker(f.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		case <-f.kick:
		}
		if err := f.poll(ctx); err != nil && ctx.Err() == nil {
			f.log.WarnContext(ctx, "tokens: revocation feed", "err", err)
		}
	}
}

// follow wakes the feed whenever the store notifies a revocation committed
// (of any kind, by any replica on PostgreSQL, through any handle of this
// process on SQLite), until ctx ends, so that events reach subscribers well
// within the poll interval. A broken subscription is renewed after a poll
// interval; the wake on renewal reads what committed while it was down,
// and the ticker's polling covers the gap meanwhile.
func (f *feed) follow(ctx context.Context, n store.FeedNotifier) {
	for {
		ch, err := n.NotifyRevocations(ctx)
		if err == nil {
			f.wake()
			for range ch {
				f.wake()
			}
		} else if ctx.Err() == nil {
			f.log.WarnContext(ctx, "tokens: revocation feed: cannot subscribe to notifications; polling", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(f.interval):
		}
	}
}

// start sets the feed's position to the latest event, once: subscribers
// without a Last-Event-ID get the revocations from then on.
func (f *feed) start(ctx context.Context) error {
	f.mu.Lock()
	started := f.started
	f.mu.Unlock()
	if started {
		return nil
	}
	epoch, err := f.st.Epoch(ctx)
	if err != nil {
		return err
	}
	seq, err := f.st.LatestRevocationSeq(ctx)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.started {
		f.last, f.epoch, f.started = seq, epoch, true
	}
	return nil
}

func (f *feed) end() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ended = true
	f.closing.Do(func() { close(f.closed) })
	clear(f.subs)
}

// poll hands out every event after the last one handed out.
func (f *feed) poll(ctx context.Context) error {
	for {
		f.mu.Lock()
		after := f.last
		f.mu.Unlock()
		events, err := f.st.RevocationEvents(ctx, after, store.MaxRevocationEvents)
		if err != nil {
			return err
		}
		for _, e := range events {
			if err := f.publish(ctx, e); err != nil {
				return err
			}
		}
		if len(events) < store.MaxRevocationEvents {
			return nil
		}
	}
}

// publish hands e to the subscribers, signing it if there are any. On
// error the feed stays before e and tries again at the next poll.
func (f *feed) publish(ctx context.Context, e store.RevocationEvent) error {
	var set string
	for {
		f.mu.Lock()
		if set != "" || len(f.subs) == 0 {
			f.last = max(f.last, e.Seq)
			for sub := range f.subs {
				sub.offer(Event{Epoch: f.epoch, Seq: e.Seq, SET: set})
			}
			f.mu.Unlock()
			return nil
		}
		f.mu.Unlock()
		var err error
		if set, err = f.event(ctx, e); err != nil {
			return err
		}
	}
}

// event returns e signed, signing it if it is not among the recent ones;
// signatures run one at a time, and a signature another subscriber made
// meanwhile is taken as it is.
func (f *feed) event(ctx context.Context, e store.RevocationEvent) (string, error) {
	if set, ok := f.cached(e.Seq); ok {
		return set, nil
	}
	select {
	case f.signing <- struct{}{}:
		defer func() { <-f.signing }()
	case <-ctx.Done():
		return "", ctx.Err()
	}
	if set, ok := f.cached(e.Seq); ok {
		return set, nil
	}
	set, err := f.sign(ctx, e)
	if err != nil {
		return "", err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.signed[e.Seq]; !ok {
		f.signed[e.Seq] = set
		f.order = append(f.order, e.Seq)
		if len(f.order) > recentEvents {
			delete(f.signed, f.order[0])
			f.order = f.order[1:]
		}
	}
	return set, nil
}

// cached returns event seq signed, if it is kept.
func (f *feed) cached(seq uint64) (string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	set, ok := f.signed[seq]
	return set, ok
}

// Subscription is one subscriber's view of the feed: the events after its
// starting point, in sequence order, each once.
type Subscription struct {
	f       *feed
	next    uint64 // the backlog runs from after next ...
	after   uint64 // ... up to after; live events come after it
	pending []store.RevocationEvent
	epoch   string
	head    uint64 // the store's latest event when the subscription started
	ch      chan Event
	lost    chan struct{} // closed when the subscriber fell behind
}

// Head is the SSE id of the feed's latest event when the subscription
// started ("<epoch>.0" before the first): a subscriber that has seen a
// later event of the epoch, or one of another epoch, resynchronises.
func (sub *Subscription) Head() string { return EventID(sub.epoch, sub.head) }

// Subscribe starts a subscription to the revocation feed for the holder of
// caller, which must be a client certificate of ours (as for
// introspection). lastEventID is the SSE Last-Event-ID: empty to start
// with the next revocation, "0" to start from the first event the store
// holds, or the ID of the last event seen to resume after it. Errors:
// invalid_client, invalid_request for a malformed lastEventID, ErrResync
// for one not on this feed (another epoch, none, or ahead of the head),
// ErrFeedUnavailable.
func (s *Service) Subscribe(ctx context.Context, caller *x509.Certificate, lastEventID string) (*Subscription, error) {
	if _, err := s.authenticate(ctx, caller); err != nil {
		return nil, err
	}
	if err := s.feed.start(ctx); err != nil {
		return nil, fmt.Errorf("tokens: revocation feed: %w", err)
	}
	head, err := s.feed.st.LatestRevocationSeq(ctx)
	if err != nil {
		return nil, fmt.Errorf("tokens: revocation feed: %w", err)
	}
	resume, err := s.feed.resumePoint(lastEventID, head)
	if err != nil {
		return nil, err
	}
	return s.feed.subscribe(resume, head)
}

// resumePoint parses a Last-Event-ID: nil for none, else the Seq to resume
// after, which must be on this feed: 0, or of its epoch and at most head.
func (f *feed) resumePoint(lastEventID string, head uint64) (*uint64, error) {
	if lastEventID == "" {
		return nil, nil
	}
	epoch, text, ok := strings.Cut(lastEventID, ".")
	if !ok {
		epoch, text = "", lastEventID
	}
	seq, err := strconv.ParseUint(text, 10, 64)
	if err != nil {
		return nil, invalidRequest("Last-Event-ID must be the id of an event (<epoch>.<seq>), or 0")
	}
	f.mu.Lock()
	current := f.epoch
	f.mu.Unlock()
	if seq != 0 && (epoch != current || seq > head) {
		return nil, ErrResync
	}
	return &seq, nil
}

func (f *feed) subscribe(resume *uint64, head uint64) (*Subscription, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ended || len(f.subs) >= f.maxSubs {
		return nil, ErrFeedUnavailable
	}
	sub := &Subscription{f: f, next: f.last, after: f.last, epoch: f.epoch, head: head,
		ch: make(chan Event, subscriberBuffer), lost: make(chan struct{})}
	if resume != nil {
		sub.next, sub.after = *resume, max(*resume, f.last)
	}
	f.subs[sub] = struct{}{}
	return sub, nil
}

// offer queues e for the subscriber; f.mu is held. A subscriber whose
// queue is full is dropped.
func (sub *Subscription) offer(e Event) {
	if e.Seq <= sub.after {
		return
	}
	select {
	case sub.ch <- e:
	default:
		delete(sub.f.subs, sub)
		close(sub.lost)
	}
}

// Next returns the next event, waiting for one until ctx ends. It returns
// ErrLagged when the subscriber fell behind and ErrFeedUnavailable when
// the feed stopped; resume with a new subscription from the last Seq
// returned.
func (sub *Subscription) Next(ctx context.Context) (Event, error) {
	if sub.next < sub.after {
		e, ok, err := sub.backlog(ctx)
		if err != nil || ok {
			return e, err
		}
	}
	select {
	case e := <-sub.ch:
		return e, nil
	default:
	}
	select {
	case e := <-sub.ch:
		return e, nil
	case <-sub.lost:
		return Event{}, ErrLagged
	case <-sub.f.closed:
		return Event{}, ErrFeedUnavailable
	case <-ctx.Done():
		return Event{}, ctx.Err()
	}
}

// backlog returns the next event between next and after, read from the
// store; ok is false once there are none left.
func (sub *Subscription) backlog(ctx context.Context) (Event, bool, error) {
	if len(sub.pending) == 0 {
		events, err := sub.f.st.RevocationEvents(ctx, sub.next, backlogPage)
		if err != nil {
			return Event{}, false, fmt.Errorf("tokens: revocation feed backlog: %w", err)
		}
		for _, e := range events {
			if e.Seq <= sub.after {
				sub.pending = append(sub.pending, e)
			}
		}
		if len(sub.pending) == 0 {
			sub.next = sub.after
			return Event{}, false, nil
		}
	}
	e := sub.pending[0]
	set, err := sub.f.event(ctx, e)
	if err != nil {
		return Event{}, false, err
	}
	sub.pending, sub.next = sub.pending[1:], e.Seq
	return Event{Epoch: sub.epoch, Seq: e.Seq, SET: set}, true, nil
}

// Close ends the subscription.
func (sub *Subscription) Close() {
	sub.f.mu.Lock()
	defer sub.f.mu.Unlock()
	delete(sub.f.subs, sub)
}
