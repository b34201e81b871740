package storetest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/internal/store"
)

// notifyTimeout bounds the wait for a notification; the contract's target
// is well under a second.
const notifyTimeout = 10 * time.Second

// testFeedNotifier: a store with the optional FeedNotifier power notifies
// a subscriber on one handle of revocations committed through another
// (as another replica would), with the Seq of each commit's last event,
// the latest for a receiver that fell behind, nothing for a revocation
// rolled back, and closes the channel when ctx ends. A backend without
// the power has nothing to check here.
func testFeedNotifier(t *testing.T, h *harness) {
	st, dsn := h.open(t)
	fn, ok := st.(store.FeedNotifier)
	if !ok {
		t.Logf("%T has no FeedNotifier: followers poll", st)
		return
	}
	other := h.reopen(t, dsn)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := fn.NotifyRevocations(ctx)
	if err != nil {
		t.Fatal(err)
	}
	InsertTokens(t, other, Token("a", ""), Token("a1", "a"), Token("b", ""), Token("c", ""), Token("d", ""), Token("d1", "d"), Token("e", ""))
	revoke(t, other, "a") // events 1, 2
	awaitSeq(t, ch, 2)
	revoke(t, other, "b") // 3
	revoke(t, other, "c") // 4: not read in between
	awaitSeq(t, ch, 4)
	errUndo := errors.New("undo")
	err = other.Tx(ctx, func(tx store.Tx) error {
		if _, err := tx.RevokeToken(ctx, "d", "logout", T0); err != nil { // would be 5, 6
			return err
		}
		return errUndo
	})
	if !errors.Is(err, errUndo) {
		t.Fatalf("Tx = %v, want the undo", err)
	}
	revoke(t, other, "e") // 5
	if seq := awaitSeq(t, ch, 5); seq != 5 {
		t.Fatalf("notified %d after a rolled-back revocation, want 5", seq)
	}
	cancel()
	deadline := time.After(notifyTimeout)
	for {
		select {
		case _, open := <-ch:
			if !open {
				return
			}
		case <-deadline:
			t.Fatal("the channel stays open after ctx ended")
		}
	}
}

func revoke(t *testing.T, st store.Store, jti string) {
	t.Helper()
	if _, err := st.RevokeToken(context.Background(), jti, "logout", T0); err != nil {
		t.Fatal(err)
	}
}

// awaitSeq receives from ch until it gets at least want, and returns what
// it got; Seqs never go down.
func awaitSeq(t *testing.T, ch <-chan uint64, want uint64) uint64 {
	t.Helper()
	deadline := time.After(notifyTimeout)
	var last uint64
	for {
		select {
		case seq, open := <-ch:
			if !open {
				t.Fatalf("channel closed waiting for %d", want)
			}
			if seq < last {
				t.Fatalf("notified %d after %d", seq, last)
			}
			if last = seq; seq >= want {
				return seq
			}
		case <-deadline:
			t.Fatalf("no notification of %d in %v (last %d)", want, notifyTimeout, last)
		}
	}
}

// testNotifyEveryRevocation: a FeedNotifier subscriber is woken, after
// COMMIT, by every kind of revocation (a token's; a certificate's, by an
// operator and for each trust reason; a device disabled), made through
// the subscriber's handle or another one, alone or in concurrent
// transactions (which SQLite commits in one batch), and every Seq it is
// notified is an event it can read at once. A revocation rolled back, with
// more events than the one committed after it, is never notified: the
// waiter would be told of Seqs with no row.
func testNotifyEveryRevocation(t *testing.T, h *harness) {
	st, dsn := h.open(t)
	fn, ok := st.(store.FeedNotifier)
	if !ok {
		t.Logf("%T has no FeedNotifier: followers poll", st)
		return
	}
	other := h.reopen(t, dsn)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := fn.NotifyRevocations(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, _, certs := Enroll(t, other, "notify-certs", 4)
	disabled, _, _ := Enroll(t, other, "notify-disabled", 1)
	undone, _, _ := Enroll(t, other, "notify-undone", 3)
	InsertTokens(t, other, Token("tok", ""), Token("after-undo", ""))
	for i := range 8 {
		InsertTokens(t, other, Token(fmt.Sprintf("batch-%d", i), ""))
	}
	var last uint64
	// woken runs revoke, then waits for the notification of the head it
	// left, checking that each Seq notified meanwhile can be read.
	woken := func(kind string, revoke func() error) {
		t.Helper()
		if err := revoke(); err != nil {
			t.Fatalf("%s: %v", kind, err)
		}
		head, err := st.LatestRevocationSeq(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if head <= last {
			t.Fatalf("%s: no revocation event (head %d)", kind, head)
		}
		deadline := time.After(notifyTimeout)
		for last < head {
			select {
			case seq, open := <-ch:
				if !open {
					t.Fatalf("%s: channel closed", kind)
				}
				events, err := st.RevocationEvents(ctx, seq-1, 1)
				if err != nil {
					t.Fatal(err)
				}
				if len(events) != 1 || events[0].Seq != seq {
					t.Fatalf("%s: notified %d, an event that cannot be read (%+v)", kind, seq, events)
				}
				if seq < last {
					t.Fatalf("%s: notified %d after %d", kind, seq, last)
				}
				last = seq
			case <-deadline:
				t.Fatalf("%s: not woken in %v (notified %d, head %d)", kind, notifyTimeout, last, head)
			}
		}
	}
	certificate := func(s store.Store, i int, reason string) func() error {
		return func() error {
			_, err := s.RevokeCertificate(ctx, certs[i].Serial, reason, T0)
			return err
		}
	}
	woken("token", func() error { _, err := other.RevokeToken(ctx, "tok", "logout", T0); return err })
	woken("certificate by an operator", certificate(other, 0, "keyCompromise"))
	woken(store.ReasonAttestationFailed, certificate(other, 1, store.ReasonAttestationFailed))
	woken(store.ReasonAttestationExpired, certificate(st, 2, store.ReasonAttestationExpired))
	woken(store.ReasonPolicyChanged, certificate(other, 3, store.ReasonPolicyChanged))
	woken("device disabled", func() error {
		_, err := other.SetDeviceStatus(ctx, disabled.EKHash, store.DeviceDisabled, T0)
		return err
	})
	woken("concurrent transactions", func() error {
		errs := make(chan error, 8)
		for i := range 8 {
			go func() {
				errs <- other.Tx(ctx, func(tx store.Tx) error {
					_, err := tx.RevokeToken(ctx, fmt.Sprintf("batch-%d", i), "logout", T0)
					return err
				})
			}()
		}
		var err error
		for range 8 {
			err = errors.Join(err, <-errs)
		}
		return err
	})
	errUndo := errors.New("undo")
	woken("a revocation after one rolled back", func() error {
		err := other.Tx(ctx, func(tx store.Tx) error {
			if _, err := tx.SetDeviceStatus(ctx, undone.EKHash, store.DeviceDisabled, T0); err != nil {
				return err // would be 3 events
			}
			return errUndo
		})
		if !errors.Is(err, errUndo) {
			return fmt.Errorf("rolled-back Tx = %v, want the undo", err)
		}
		_, err = other.RevokeToken(ctx, "after-undo", "logout", T0) // 1 event
		return err
	})
}
