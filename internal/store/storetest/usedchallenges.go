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

// testUseChallenge: a stateless challenge is used once; a use rolled back
// with its transaction is not a use; expired uses are purged.
func testUseChallenge(t *testing.T, h *harness) {
	st := h.fresh(t)
	ctx := context.Background()
	if used, err := st.ChallengeUsed(ctx, "s1"); err != nil || used {
		t.Fatalf("ChallengeUsed before use = %v, %v; want false", used, err)
	}
	if err := st.UseChallenge(ctx, "s1", T0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if used, err := st.ChallengeUsed(ctx, "s1"); err != nil || !used {
		t.Fatalf("ChallengeUsed after use = %v, %v; want true", used, err)
	}
	if err := st.UseChallenge(ctx, "s1", T0.Add(time.Minute)); !errors.Is(err, store.ErrChallengeUsed) {
		t.Fatalf("second UseChallenge = %v, want ErrChallengeUsed", err)
	}
	rollback := errors.New("rolled back")
	err := st.Tx(ctx, func(tx store.Tx) error {
		if err := tx.UseChallenge(ctx, "s2", T0.Add(time.Minute)); err != nil {
			return err
		}
		return rollback
	})
	if !errors.Is(err, rollback) {
		t.Fatalf("Tx = %v, want the rollback", err)
	}
	if err := st.UseChallenge(ctx, "s2", T0.Add(time.Minute)); err != nil {
		t.Fatalf("UseChallenge after a rolled-back use: %v", err)
	}
	if err := st.UseChallenge(ctx, "s3", T0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	n, err := st.PurgeExpiredChallenges(ctx, T0.Add(10*time.Minute))
	if err != nil || n != 2 {
		t.Fatalf("PurgeExpiredChallenges = %d, %v; want 2", n, err)
	}
	for id, want := range map[string]bool{"s1": false, "s2": false, "s3": true} {
		if used, err := st.ChallengeUsed(ctx, id); err != nil || used != want {
			t.Errorf("ChallengeUsed(%s) after purge = %v, %v; want %v", id, used, err, want)
		}
	}
}

// testUseChallengeRace: of concurrent uses of one challenge in
// transactions on several handles, exactly one commits.
func testUseChallengeRace(t *testing.T, h *harness) {
	st, dsn := h.open(t)
	handles := []store.Store{st, h.reopen(t, dsn), h.reopen(t, dsn)}
	const perHandle = 4
	var wins atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for _, s := range handles {
		for range perHandle {
			wg.Go(func() {
				<-start
				err := s.Tx(context.Background(), func(tx store.Tx) error {
					return tx.UseChallenge(context.Background(), "raced", T0.Add(time.Minute))
				})
				switch {
				case err == nil:
					wins.Add(1)
				case !errors.Is(err, store.ErrChallengeUsed):
					t.Errorf("UseChallenge: %v", err)
				}
			})
		}
	}
	close(start)
	wg.Wait()
	if n := wins.Load(); n != 1 {
		t.Fatalf("%d uses of one challenge committed, want 1", n)
	}
}

// testChallengeKey: the first key stored is every handle's, whatever
// candidates later callers bring.
func testChallengeKey(t *testing.T, h *harness) {
	st, dsn := h.open(t)
	other := h.reopen(t, dsn)
	ctx := context.Background()
	first := bytes.Repeat([]byte{1}, 32)
	got, err := st.ChallengeKey(ctx, first)
	if err != nil || !bytes.Equal(got, first) {
		t.Fatalf("first ChallengeKey = %x, %v; want the candidate", got, err)
	}
	for i, s := range []store.Store{st, other} {
		got, err := s.ChallengeKey(ctx, bytes.Repeat([]byte{byte(2 + i)}, 32))
		if err != nil || !bytes.Equal(got, first) {
			t.Errorf("%s: ChallengeKey = %x, %v; want the first key", fmt.Sprint("handle ", i), got, err)
		}
	}
}
