package storetest

import (
	"context"
	"errors"
	"testing"

	"github.com/sigil-dev/sigil/internal/store"
)

// testEpoch: a database has an epoch from its creation, the same through
// every handle; two databases have different ones.
func testEpoch(t *testing.T, h *harness) {
	ctx := context.Background()
	st, dsn := h.open(t)
	epoch, err := st.Epoch(ctx)
	if err != nil || epoch == "" {
		t.Fatalf("Epoch = %q, %v; want a non-empty epoch", epoch, err)
	}
	if again, err := h.reopen(t, dsn).Epoch(ctx); err != nil || again != epoch {
		t.Errorf("Epoch through another handle = %q, %v; want %q", again, err, epoch)
	}
	if other, err := h.fresh(t).Epoch(ctx); err != nil || other == epoch {
		t.Errorf("another database's Epoch = %q, %v; want one other than %q", other, err, epoch)
	}
}

// testNewEpoch: NewEpoch replaces the epoch with one never seen before, in
// its Tx: undone with it, seen by every handle once committed.
func testNewEpoch(t *testing.T, h *harness) {
	ctx := context.Background()
	st, dsn := h.open(t)
	first, err := st.Epoch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	errUndo := errors.New("undo")
	err = st.Tx(ctx, func(tx store.Tx) error {
		if _, err := tx.NewEpoch(ctx); err != nil {
			return err
		}
		return errUndo
	})
	if !errors.Is(err, errUndo) {
		t.Fatalf("Tx = %v, want %v", err, errUndo)
	}
	if got, _ := st.Epoch(ctx); got != first {
		t.Fatalf("after a rolled back NewEpoch, Epoch = %q, want %q", got, first)
	}
	seen := map[string]bool{first: true}
	for range 3 {
		var epoch, inTx string
		err := st.Tx(ctx, func(tx store.Tx) error {
			var err error
			if epoch, err = tx.NewEpoch(ctx); err != nil {
				return err
			}
			inTx, err = tx.Epoch(ctx)
			return err
		})
		if err != nil || epoch == "" || seen[epoch] {
			t.Fatalf("NewEpoch = %q, %v; want a new epoch (seen %v)", epoch, err, seen)
		}
		seen[epoch] = true
		if inTx != epoch {
			t.Errorf("Epoch in NewEpoch's Tx = %q, want %q", inTx, epoch)
		}
		if got, err := h.reopen(t, dsn).Epoch(ctx); err != nil || got != epoch {
			t.Errorf("Epoch through another handle = %q, %v; want %q", got, err, epoch)
		}
	}
}
