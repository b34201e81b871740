package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/internal/store"
)

// testLocker: a store with the optional Locker power gives a lock to one
// session at a time across handles (as across replicas): TryLock through
// another handle fails while it is held, Lock waits for it, Held reports
// it held until Unlock and lost after, and another handle takes it once
// released. Locks of other names are independent. A backend without the
// power has nothing to check here: its one process holds every lock.
func testLocker(t *testing.T, h *harness) {
	st, dsn := h.open(t)
	lk, ok := st.(store.Locker)
	if !ok {
		t.Logf("%T has no Locker: one process holds every lock", st)
		return
	}
	other, ok := h.reopen(t, dsn).(store.Locker)
	if !ok {
		t.Fatal("a reopened store lost the Locker power")
	}
	ctx := context.Background()
	a, ok, err := lk.TryLock(ctx, "publisher")
	if err != nil || !ok {
		t.Fatalf("TryLock of a free lock = %v, %v; want it taken", ok, err)
	}
	if err := a.Held(ctx); err != nil {
		t.Fatalf("Held of a lock just taken: %v", err)
	}
	if b, ok, err := other.TryLock(ctx, "publisher"); err != nil || ok {
		if b != nil {
			b.Unlock()
		}
		t.Fatalf("TryLock of a held lock through another handle = %v, %v; want not taken", ok, err)
	}
	c, ok, err := other.TryLock(ctx, "init")
	if err != nil || !ok {
		t.Fatalf("TryLock of another name = %v, %v; want it taken", ok, err)
	}
	c.Unlock()
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if b, err := other.Lock(short, "publisher"); err == nil {
		b.Unlock()
		t.Fatal("Lock of a held lock returned before it was released")
	}
	got := make(chan store.Lock, 1)
	go func() {
		b, err := other.Lock(ctx, "publisher")
		if err != nil {
			t.Errorf("Lock waiting for a released lock: %v", err)
		}
		got <- b
	}()
	a.Unlock()
	if err := a.Held(ctx); !errors.Is(err, store.ErrLockLost) {
		t.Fatalf("Held after Unlock = %v, want ErrLockLost", err)
	}
	select {
	case b := <-got:
		if b == nil {
			return
		}
		defer b.Unlock()
		if err := b.Held(ctx); err != nil {
			t.Fatalf("Held of the lock taken after release: %v", err)
		}
	case <-time.After(notifyTimeout):
		t.Fatal("Lock did not return after the lock was released")
	}
	if a2, ok, err := lk.TryLock(ctx, "publisher"); err != nil || ok {
		if a2 != nil {
			a2.Unlock()
		}
		t.Fatalf("TryLock of a lock the other handle took = %v, %v; want not taken", ok, err)
	}
}
