package store

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"
)

// completeEnrollment is what the server does in one transaction on
// POST /v1/enroll/complete; fail, if set, runs last and fails it.
func completeEnrollment(ctx context.Context, st Store, id string, d Device, e Evidence, c Certificate, fail func(Tx) error) error {
	return st.Tx(ctx, func(tx Tx) error {
		if _, err := tx.ConsumeChallenge(ctx, id, t0.Add(time.Second)); err != nil {
			return err
		}
		if _, err := tx.BindDevice(ctx, d, t0); err != nil {
			return err
		}
		if err := tx.PutEvidence(ctx, e); err != nil {
			return err
		}
		if err := tx.InsertCertificate(ctx, c); err != nil {
			return err
		}
		if fail != nil {
			return fail(tx)
		}
		return nil
	})
}

func TestTxCommits(t *testing.T) {
	st, _ := openStore(t)
	ctx := context.Background()
	d := testDevice("d1")
	ch, e := testChallenge("c1", d), testEvidence("e1", d)
	c := testCertificate("01", d, e)
	if err := st.CreateChallenge(ctx, ch); err != nil {
		t.Fatal(err)
	}
	if err := completeEnrollment(ctx, st, ch.ID, d, e, c, nil); err != nil {
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

// TestTxRollsBack: whatever ends the transaction early, none of its writes
// are kept and the challenge can still be used.
func TestTxRollsBack(t *testing.T) {
	errBoom := errors.New("audit log unavailable")
	for _, tc := range []struct {
		name    string
		fail    func(context.CancelFunc) func(Tx) error
		want    error
		panics  bool
		wantAny bool // any error will do
	}{
		{"error", func(context.CancelFunc) func(Tx) error {
			return func(Tx) error { return errBoom }
		}, errBoom, false, false},
		{"store error", func(context.CancelFunc) func(Tx) error {
			return func(tx Tx) error { return tx.CreateChallenge(context.Background(), Challenge{}) }
		}, nil, false, true},
		{"panic", func(context.CancelFunc) func(Tx) error {
			return func(Tx) error { panic(errBoom) }
		}, nil, true, false},
		{"context canceled", func(cancel context.CancelFunc) func(Tx) error {
			return func(Tx) error { cancel(); return nil }
		}, context.Canceled, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, _ := openStore(t)
			d := testDevice("d1")
			ch, e := testChallenge("c1", d), testEvidence("e1", d)
			c := testCertificate("01", d, e)
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
				return completeEnrollment(ctx, st, ch.ID, d, e, c, tc.fail(cancel))
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
			if err := completeEnrollment(context.Background(), st, ch.ID, d, e, c, nil); err != nil {
				t.Fatalf("enrollment after rollback: %v", err)
			}
		})
	}
}

func assertNotEnrolled(t *testing.T, st Store, ch Challenge, d Device, e Evidence, c Certificate) {
	t.Helper()
	ctx := context.Background()
	if got, err := st.Challenge(ctx, ch.ID); err != nil || got.ConsumedAt != nil {
		t.Errorf("challenge consumed after rollback: %+v, %v", got.ConsumedAt, err)
	}
	if _, err := st.Device(ctx, d.EKHash); !errors.Is(err, ErrNotFound) {
		t.Errorf("device after rollback: %v, want ErrNotFound", err)
	}
	if _, err := st.Certificate(ctx, c.Serial); !errors.Is(err, ErrNotFound) {
		t.Errorf("certificate after rollback: %v, want ErrNotFound", err)
	}
	if _, err := st.Evidence(ctx, e.Digest); !errors.Is(err, ErrNotFound) {
		t.Errorf("evidence after rollback: %v, want ErrNotFound", err)
	}
}

// TestTxIsolation: a transaction reads its own writes; the Store does not
// see them before commit, and reading through it inside fn does not block.
func TestTxIsolation(t *testing.T) {
	st, _ := openStore(t)
	ctx := context.Background()
	ch := testChallenge("c1", testDevice("d1"))
	var leaked Tx
	err := st.Tx(ctx, func(tx Tx) error {
		leaked = tx
		if err := tx.CreateChallenge(ctx, ch); err != nil {
			return err
		}
		if _, err := tx.Challenge(ctx, ch.ID); err != nil {
			t.Errorf("tx does not read its own write: %v", err)
		}
		if _, err := st.Challenge(ctx, ch.ID); !errors.Is(err, ErrNotFound) {
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
	if err := leaked.CreateChallenge(ctx, testChallenge("c2", testDevice("d1"))); err == nil {
		t.Fatal("a Tx used after Tx returned wrote")
	}
}
