package storetest

import (
	"context"
	"errors"
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
