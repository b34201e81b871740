package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/internal/store"
)

// testCRL: LatestCRL is ErrNotFound before the first PutCRL and returns
// what was stored after; PutCRL is fenced: a number not above the stored
// one is ErrConflict and changes nothing; an empty DER is refused.
func testCRL(t *testing.T, h *harness) {
	st := h.fresh(t)
	ctx := context.Background()
	if _, err := st.LatestCRL(ctx); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("LatestCRL of a new store: %v, want ErrNotFound", err)
	}
	first := store.CRL{Number: 10, RevocationSeq: 3, ProducedAt: T0, DER: []byte("crl-10")}
	if err := st.PutCRL(ctx, first); err != nil {
		t.Fatal(err)
	}
	for _, c := range []store.CRL{
		{Number: 10, RevocationSeq: 4, ProducedAt: T0.Add(time.Second), DER: []byte("another crl-10")},
		{Number: 9, RevocationSeq: 4, ProducedAt: T0.Add(time.Second), DER: []byte("crl-9")},
	} {
		if err := st.PutCRL(ctx, c); !errors.Is(err, store.ErrConflict) {
			t.Errorf("PutCRL of number %d after 10: %v, want ErrConflict", c.Number, err)
		}
	}
	if err := st.PutCRL(ctx, store.CRL{Number: 11, ProducedAt: T0}); err == nil {
		t.Error("a CRL with no DER was stored")
	}
	got, err := st.LatestCRL(ctx)
	if err != nil || got.Number != 10 || got.RevocationSeq != 3 || !got.ProducedAt.Equal(T0) || !bytes.Equal(got.DER, first.DER) {
		t.Fatalf("LatestCRL = %+v, %v; want %+v", got, err, first)
	}
	next := store.CRL{Number: 11, RevocationSeq: 5, ProducedAt: T0.Add(time.Minute), DER: []byte("crl-11")}
	if err := st.PutCRL(ctx, next); err != nil {
		t.Fatal(err)
	}
	if got, err := st.LatestCRL(ctx); err != nil || got.Number != 11 || !bytes.Equal(got.DER, next.DER) {
		t.Fatalf("LatestCRL = %+v, %v; want number 11", got, err)
	}
}

// testCRLRace: replicas storing CRLs of one number at once, through
// handles of their own: exactly one succeeds, and its CRL is the one
// stored.
func testCRLRace(t *testing.T, h *harness) {
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
				der := fmt.Appendf(nil, "crl-%d-%d", i, j)
				switch err := s.PutCRL(context.Background(), store.CRL{Number: 7, ProducedAt: T0, DER: der}); {
				case err == nil:
					wins.Add(1)
					won.Store(string(der), true)
				case !errors.Is(err, store.ErrConflict):
					t.Errorf("PutCRL: %v", err)
				}
			})
		}
	}
	close(start)
	wg.Wait()
	if n := wins.Load(); n != 1 {
		t.Fatalf("%d PutCRLs of one number succeeded, want 1", n)
	}
	got, err := st.LatestCRL(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := won.Load(string(got.DER)); !ok {
		t.Fatalf("stored CRL %q is not the one whose PutCRL succeeded", got.DER)
	}
}
