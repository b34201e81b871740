package storetest

import (
	"context"
	"errors"
	"reflect"
	"testing"

	"github.com/sigil-dev/sigil/internal/store"
)

func testTxCommits(t *testing.T, h *harness) {
	st := h.fresh(t)
	ctx := context.Background()
	d := Device("d1")
	ch, e := Challenge("c1", d), Evidence("e1", d)
	c := Certificate("01", d, e)
	if err := st.CreateChallenge(ctx, ch); err != nil {
		t.Fatal(err)
	}
	if err := CompleteEnrollment(ctx, st, ch.ID, d, e, c, nil); err != nil {
		t.Fatal(err)
	}
	if got, err := st.Challenge(ctx, ch.ID); err != nil || got.ConsumedAt == nil {
		t.Errorf("challenge not consumed: %+v, %v", got, err)
	}
	if got, err := st.Device(ctx, d.EKHash); err != nil || got.AKHash != d.AKHash {
		t.Errorf("device not bound: %+v, %v", got, err)
	}
	if got, err := st.Certificate(ctx, c.Serial); err != nil || !reflect.DeepEqual(got, c) {
		t.Errorf("certificate = %+v, %v", got, err)
	}
	if _, err := st.Evidence(ctx, e.Digest); err != nil {
		t.Errorf("evidence: %v", err)
	}
}

// testTxRollsBack: whatever ends the transaction early, none of its writes
// are kept and the challenge can still be used.
func testTxRollsBack(t *testing.T, h *harness) {
	errBoom := errors.New("audit log unavailable")
	for _, tc := range []struct {
		name    string
		fail    func(context.CancelFunc) func(store.Tx) error
		want    error
		panics  bool
		wantAny bool // any error will do
	}{
		{"error", func(context.CancelFunc) func(store.Tx) error {
			return func(store.Tx) error { return errBoom }
		}, errBoom, false, false},
		{"store error", func(context.CancelFunc) func(store.Tx) error {
			return func(tx store.Tx) error { return tx.CreateChallenge(context.Background(), store.Challenge{}) }
		}, nil, false, true},
		{"panic", func(context.CancelFunc) func(store.Tx) error {
			return func(store.Tx) error { panic(errBoom) }
		}, nil, true, false},
		{"context canceled", func(cancel context.CancelFunc) func(store.Tx) error {
			return func(store.Tx) error { cancel(); return nil }
		}, context.Canceled, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := h.fresh(t)
			d := Device("d1")
			ch, e := Challenge("c1", d), Evidence("e1", d)
			c := Certificate("01", d, e)
			if err := st.CreateChallenge(context.Background(), ch); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			err := func() (err error) {
				defer func() {
					if p := recover(); p != nil {
						if !tc.panics {
							panic(p)
						}
						err = errBoom
					}
				}()
				return CompleteEnrollment(ctx, st, ch.ID, d, e, c, tc.fail(cancel))
			}()
			switch {
			case tc.panics && err != errBoom:
				t.Fatalf("Tx = %v, want the panic to propagate", err)
			case tc.wantAny && err == nil:
				t.Fatal("Tx succeeded")
			case tc.want != nil && !errors.Is(err, tc.want):
				t.Fatalf("Tx = %v, want %v", err, tc.want)
			}
			assertNotEnrolled(t, st, ch, d, e, c)
			// The writer connection went back to the pool in a usable state.
			if err := CompleteEnrollment(context.Background(), st, ch.ID, d, e, c, nil); err != nil {
				t.Fatalf("enrollment after rollback: %v", err)
			}
		})
	}
}

func assertNotEnrolled(t *testing.T, st store.Store, ch store.Challenge, d store.Device, e store.Evidence, c store.Certificate) {
	t.Helper()
	ctx := context.Background()
	if got, err := st.Challenge(ctx, ch.ID); err != nil || got.ConsumedAt != nil {
		t.Errorf("challenge consumed after rollback: %+v, %v", got.ConsumedAt, err)
	}
	if _, err := st.Device(ctx, d.EKHash); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("device after rollback: %v, want ErrNotFound", err)
	}
	if _, err := st.Certificate(ctx, c.Serial); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("certificate after rollback: %v, want ErrNotFound", err)
	}
	if _, err := st.Evidence(ctx, e.Digest); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("evidence after rollback: %v, want ErrNotFound", err)
	}
}

// testTxIsolation: a transaction reads its own writes; the Store does not
// see them before commit, and reading through it inside fn does not block.
func testTxIsolation(t *testing.T, h *harness) {
	st := h.fresh(t)
	ctx := context.Background()
	ch := Challenge("c1", Device("d1"))
	var leaked store.Tx
	err := st.Tx(ctx, func(tx store.Tx) error {
		leaked = tx
		if err := tx.CreateChallenge(ctx, ch); err != nil {
			return err
		}
		if _, err := tx.Challenge(ctx, ch.ID); err != nil {
			t.Errorf("tx does not read its own write: %v", err)
		}
		if _, err := st.Challenge(ctx, ch.ID); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("uncommitted write visible outside: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Challenge(ctx, ch.ID); err != nil {
		t.Fatalf("committed write not visible: %v", err)
	}
	if err := leaked.CreateChallenge(ctx, Challenge("c2", Device("d1"))); err == nil {
		t.Fatal("a Tx used after Tx returned wrote")
	}
}

// testTxCanceledBeforeStart: a Tx whose ctx has ended does not run fn.
func testTxCanceledBeforeStart(t *testing.T, h *harness) {
	st := h.fresh(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := st.Tx(ctx, func(store.Tx) error { t.Error("fn ran"); return nil })
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Tx = %v, want context.Canceled", err)
	}
}
