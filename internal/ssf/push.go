package ssf

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/sigil-dev/sigil/internal/store"
)

// pushStream delivers stream id by RFC 8935 push, one SET at a time, in
// order, until ctx ends or the stream is deleted: a SET the receiver
// accepted (202) or rejected (400) is done; any other answer, or none, is
// retried with a backoff doubling up to MaxPushBackoff.
func (t *Transmitter) pushStream(ctx context.Context, id string) {
	backoff := t.cfg.PushBackoff
	for ctx.Err() == nil {
		changed := t.changes()
		b, err := t.deliver(ctx, id, "", MethodPush, exchange{max: 1})
		switch {
		case errors.Is(err, errNoStream) || errors.Is(err, errMethod):
			return
		case err == nil && !t.configured(b.stream.Receiver, b.config.Delivery.EndpointURL):
			t.log.WarnContext(ctx, "ssf: push stream of a receiver or endpoint no longer configured: not pushed", "stream", id)
			return
		case err == nil && len(b.items) == 0:
			backoff = t.cfg.PushBackoff
			wait(ctx, changed, t.cfg.PollInterval*10)
			continue
		case err == nil:
			err = t.pushOne(ctx, b)
			t.metrics.count("push", pushOutcome(err), 1)
			if err == nil || errors.Is(err, ErrPushRejected) {
				if err != nil {
					t.log.WarnContext(ctx, "ssf: push", "stream", id, "jti", b.items[0].jti, "err", err)
				}
				err = t.pushed(ctx, id, b.items[0].jti)
			}
			if err == nil {
				backoff = t.cfg.PushBackoff
				continue
			}
		}
		t.log.WarnContext(ctx, "ssf: push failed; retrying", "stream", id, "err", err, "retry_in", backoff)
		wait(ctx, nil, backoff)
		backoff = min(2*backoff, t.cfg.MaxPushBackoff)
	}
}

func pushOutcome(err error) string {
	switch {
	case err == nil:
		return "accepted"
	case errors.Is(err, ErrPushRejected):
		return "rejected"
	}
	return "failed"
}

// pushed records that the receiver took the SET jti, even if ctx ended
// meanwhile (sigild stopping): a SET posted and not recorded is posted
// again, by this replica or the next to push.
func (t *Transmitter) pushed(ctx context.Context, id, jti string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_, err := t.deliver(ctx, id, "", MethodPush, exchange{acks: []string{jti}})
	if errors.Is(err, errNoStream) {
		return nil
	}
	return err
}

// pushOne posts b's one SET to the stream's endpoint.
func (t *Transmitter) pushOne(ctx context.Context, b batch) error {
	sets, err := t.signed(ctx, b)
	if err != nil {
		return err
	}
	d := b.config.Delivery
	if !httpsURL(d.EndpointURL) || !t.configured(b.stream.Receiver, d.EndpointURL) {
		return fmt.Errorf("%w: %s", errNotConfigured, d.EndpointURL)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.EndpointURL, strings.NewReader(sets[0]))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/secevent+jwt")
	req.Header.Set("Accept", "application/json")
	if d.AuthorizationHeader != "" {
		req.Header.Set("Authorization", d.AuthorizationHeader)
	}
	resp, err := t.cfg.PushClient.Do(req)
	if err != nil {
		return fmt.Errorf("ssf: push %s: %w", b.items[0].jti, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	switch resp.StatusCode {
	case http.StatusAccepted, http.StatusOK, http.StatusNoContent:
		return nil
	case http.StatusBadRequest:
		var e SetErr
		_ = json.Unmarshal(body, &e)
		return fmt.Errorf("%w: %s: %s", ErrPushRejected, e.Err, e.Description)
	}
	return fmt.Errorf("ssf: push %s: the receiver answered %s", b.items[0].jti, resp.Status)
}

func wait(ctx context.Context, changed <-chan struct{}, d time.Duration) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
	case <-changed:
	case <-timer.C:
	}
}

// errNotConfigured: a push to an endpoint not configured for the stream's
// receiver (any more).
var errNotConfigured = errors.New("ssf: push endpoint not configured for the receiver")

// pushLock is the lock the replica that pushes holds: one replica at a
// time delivers every push stream.
const pushLock = "sigil-ssf-push"

// Run follows the revocation feed until ctx ends: it wakes long polls
// when events commit (at once on a store.FeedNotifier, else within
// PollInterval) and delivers push streams, on one replica at a time (a
// store.Locker lease; a store without one serves one process). Call it
// once, in the background.
func (t *Transmitter) Run(ctx context.Context) error {
	go t.follow(ctx)
	for ctx.Err() == nil {
		changed := t.changes()
		if t.anyPushable(ctx) {
			lease, err := t.lease(ctx)
			if err != nil {
				t.log.WarnContext(ctx, "ssf: push lease", "err", err)
			}
			if lease != nil {
				t.pushAll(ctx, lease)
				lease.Unlock()
				continue
			}
		}
		wait(ctx, changed, leaseRetry)
	}
	return ctx.Err()
}

// leaseRetry is how often a replica that does not push checks for push
// streams and tries the lease: taking it is a database session of its own.
const leaseRetry = time.Second

// anyPushable reports whether a stream is to be pushed.
func (t *Transmitter) anyPushable(ctx context.Context) bool {
	streams, err := t.cfg.Store.Streams(ctx)
	if err != nil && ctx.Err() == nil {
		t.log.WarnContext(ctx, "ssf: list streams", "err", err)
	}
	return slices.ContainsFunc(streams, t.pushable)
}

type heldLock interface {
	Held(ctx context.Context) error
	Unlock()
}

type noLock struct{}

func (noLock) Held(context.Context) error { return nil }
func (noLock) Unlock()                    {}

func (t *Transmitter) lease(ctx context.Context) (heldLock, error) {
	lk, ok := t.cfg.Store.(store.Locker)
	if !ok {
		return noLock{}, nil
	}
	l, held, err := lk.TryLock(ctx, pushLock)
	if err != nil || !held {
		return nil, err
	}
	return l, nil
}

// pushAll runs a pusher per push stream while the lease is held.
func (t *Transmitter) pushAll(ctx context.Context, lease heldLock) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	running := map[string]context.CancelFunc{}
	done := make(chan string, 16)
	for {
		if err := lease.Held(ctx); err != nil {
			t.log.WarnContext(ctx, "ssf: push lease lost", "err", err)
			return
		}
		streams, err := t.cfg.Store.Streams(ctx)
		if err != nil && ctx.Err() == nil {
			t.log.WarnContext(ctx, "ssf: list streams", "err", err)
		}
		for _, s := range streams {
			if _, ok := running[s.ID]; ok || !t.pushable(s) {
				continue
			}
			sctx, stop := context.WithCancel(ctx)
			running[s.ID] = stop
			go func() {
				t.pushStream(sctx, s.ID)
				select {
				case done <- s.ID:
				case <-ctx.Done():
				}
			}()
		}
		timer := time.NewTimer(leaseRetry)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case id := <-done:
			running[id]()
			delete(running, id)
		case <-t.changes():
		case <-timer.C:
		}
		timer.Stop()
	}
}

// pushable reports whether s is a push stream whose receiver is still
// configured with its endpoint: a receiver or endpoint removed from the
// configuration gets nothing more.
func (t *Transmitter) pushable(s store.Stream) bool {
	c, err := decodeConfig(s)
	return err == nil && c.Delivery.Method == MethodPush && t.configured(s.Receiver, c.Delivery.EndpointURL)
}

func (t *Transmitter) configured(receiver, endpoint string) bool {
	r, ok := t.receivers[receiver]
	return ok && slices.Contains(r.PushEndpoints, endpoint)
}

// follow wakes waiters whenever the revocation feed's head moves: at once
// when the store notifies a commit (a store.FeedNotifier, whose
// subscription is renewed when it breaks), and at least every
// PollInterval, which finds what the notifications do not carry: another
// process's commits on SQLite, those made while a subscription was down.
func (t *Transmitter) follow(ctx context.Context) {
	n, _ := t.cfg.Store.(store.FeedNotifier)
	var notes <-chan uint64
	tick := time.NewTicker(t.cfg.PollInterval)
	defer tick.Stop()
	var head uint64
	subscribe := n != nil
	for {
		subscribed := false
		if subscribe {
			ch, err := n.NotifyRevocations(ctx)
			if err != nil && ctx.Err() == nil {
				t.log.WarnContext(ctx, "ssf: cannot subscribe to revocation notifications; polling", "err", err)
			}
			notes, subscribe, subscribed = ch, false, err == nil
		}
		if !subscribed { // else read what committed before the subscription
			select {
			case <-ctx.Done():
				return
			case _, ok := <-notes:
				if !ok {
					notes = nil // read the head now, subscribe again at the next tick
				}
			case <-tick.C:
				subscribe = notes == nil && n != nil
			}
		}
		seq, err := t.cfg.Store.LatestRevocationSeq(ctx)
		if err == nil && seq != head {
			head = seq
			t.wake()
		}
	}
}
