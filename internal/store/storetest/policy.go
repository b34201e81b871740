package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/internal/store"
)

// testAppliedPolicy: AppliedPolicy is ErrNotFound before the first
// PutAppliedPolicy and returns what was stored after; PutAppliedPolicy is
// fenced: a seq not above the stored one is ErrConflict and changes
// nothing; an empty version is refused.
func testAppliedPolicy(t *testing.T, h *harness) {
	st := h.fresh(t)
	ctx := context.Background()
	if _, err := st.AppliedPolicy(ctx); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("AppliedPolicy of a new store: %v, want ErrNotFound", err)
	}
	first := store.AppliedPolicy{Seq: 1, Version: "sha256:aa", AppliedAt: T0}
	if err := st.PutAppliedPolicy(ctx, first); err != nil {
		t.Fatal(err)
	}
	for _, p := range []store.AppliedPolicy{
		{Seq: 1, Version: "sha256:bb", AppliedAt: T0.Add(time.Second)},
		{Seq: 0, Version: "sha256:cc", AppliedAt: T0.Add(time.Second)},
	} {
		if err := st.PutAppliedPolicy(ctx, p); !errors.Is(err, store.ErrConflict) {
			t.Errorf("PutAppliedPolicy of seq %d after 1: %v, want ErrConflict", p.Seq, err)
		}
	}
	if err := st.PutAppliedPolicy(ctx, store.AppliedPolicy{Seq: 2, AppliedAt: T0}); err == nil {
		t.Error("an application without a version was stored")
	}
	if got, err := st.AppliedPolicy(ctx); err != nil || got != first {
		t.Fatalf("AppliedPolicy = %+v, %v; want %+v", got, err, first)
	}
	next := store.AppliedPolicy{Seq: 2, Version: "sha256:aa", AppliedAt: T0.Add(time.Minute)}
	if err := st.PutAppliedPolicy(ctx, next); err != nil {
		t.Fatal(err)
	}
	if got, err := st.AppliedPolicy(ctx); err != nil || got != next {
		t.Fatalf("AppliedPolicy = %+v, %v; want %+v", got, err, next)
	}
}

// testAppliedPolicyRace: replicas applying policy sets of one seq at once,
// through handles of their own: exactly one succeeds, and its version is
// the one stored.
func testAppliedPolicyRace(t *testing.T, h *harness) {
	st, dsn := h.open(t)
	handles := []store.Store{st, h.reopen(t, dsn), h.reopen(t, dsn)}
	const perHandle = 4
	var wins atomic.Int32
	var won sync.Map
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, s := range handles {
		for j := range perHandle {
			wg.Go(func() {
				<-start
				v := fmt.Sprintf("sha256:%d-%d", i, j)
				switch err := s.PutAppliedPolicy(context.Background(), store.AppliedPolicy{Seq: 7, Version: v, AppliedAt: T0}); {
				case err == nil:
					wins.Add(1)
					won.Store(v, true)
				case !errors.Is(err, store.ErrConflict):
					t.Errorf("PutAppliedPolicy: %v", err)
				}
			})
		}
	}
	close(start)
	wg.Wait()
	if n := wins.Load(); n != 1 {
		t.Fatalf("%d PutAppliedPolicys of one seq succeeded, want 1", n)
	}
	got, err := st.AppliedPolicy(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := won.Load(got.Version); !ok {
		t.Fatalf("stored application %q is not the one whose PutAppliedPolicy succeeded", got.Version)
	}
}
