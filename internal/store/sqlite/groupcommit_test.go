package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/internal/store"
)

// holdCommitter starts a Tx whose fn waits for release, so that Tx calls
// made meanwhile queue up and, released, run as one batch.
func holdCommitter(t *testing.T, st store.Store) (release func()) {
	t.Helper()
	entered, gate, done := make(chan struct{}), make(chan struct{}), make(chan error, 1)
	go func() {
		done <- st.Tx(context.Background(), func(store.Tx) error { close(entered); <-gate; return nil })
	}()
	<-entered
	return func() {
		close(gate)
		if err := <-done; err != nil {
			t.Errorf("holding Tx: %v", err)
		}
	}
}

// waitQueued waits until n Tx calls wait for a batch: the committer
// signals each call it queues.
func waitQueued(t *testing.T, st store.Store, n int) {
	t.Helper()
	g := st.(*sqliteStore).gc
	timeout := time.After(10 * time.Second)
	for {
		g.mu.Lock()
		queued, signal := len(g.queue), g.queued
		g.mu.Unlock()
		if queued >= n {
			return
		}
		select {
		case <-signal:
		case <-timeout:
			t.Fatalf("%d Tx calls queued after 10s, want %d", queued, n)
		}
	}
}

// txQueue makes Tx calls that queue, in order, behind a held committer.
type txQueue struct {
	t    *testing.T
	st   store.Store
	n    int
	errs []chan error
}

// add queues a Tx call with fn and returns the channel of its result.
func (q *txQueue) add(ctx context.Context, fn func(store.Tx) error) chan error {
	q.t.Helper()
	ch := make(chan error, 1)
	go func() { ch <- q.st.Tx(ctx, fn) }()
	q.n++
	waitQueued(q.t, q.st, q.n)
	return ch
}

// appendFn appends an entry named name and stores its index in idx.
func appendFn(name string, idx *uint64) func(store.Tx) error {
	return func(tx store.Tx) (err error) {
		*idx, err = tx.AppendAudit(context.Background(), testEntry(name, "jti:"+name))
		return err
	}
}

// TestGroupCommitOneTransaction: calls queued while the committer is busy
// run in one transaction: each fn sees the writes of the fns before it,
// none of which is committed yet.
func TestGroupCommitOneTransaction(t *testing.T) {
	st, _ := openStore(t)
	ctx := context.Background()
	release := holdCommitter(t, st)
	q := &txQueue{t: t, st: st}
	const n = 63
	results := make([]chan error, n)
	for i := range n {
		results[i] = q.add(ctx, func(tx store.Tx) error {
			inTx, err := tx.AuditSize(ctx)
			if err != nil {
				return err
			}
			committed, err := st.AuditSize(ctx)
			if err != nil {
				return err
			}
			if inTx != uint64(i) || committed != 0 {
				return fmt.Errorf("fn %d sees %d entries, %d committed; want %d, 0", i, inTx, committed, i)
			}
			_, err = tx.AppendAudit(ctx, testEntry(fmt.Sprint(i)))
			return err
		})
	}
	release()
	for i, ch := range results {
		if err := <-ch; err != nil {
			t.Errorf("Tx %d: %v", i, err)
		}
	}
	if size, err := st.AuditSize(ctx); err != nil || size != n {
		t.Fatalf("AuditSize = %d, %v; want %d", size, err, n)
	}
}

// TestGroupCommitMaxBatch: WithMaxBatch(1) commits every Tx on its own;
// a batch never holds more than the maximum.
func TestGroupCommitMaxBatch(t *testing.T) {
	for _, maxBatch := range []int{1, 4} {
		t.Run(fmt.Sprint(maxBatch), func(t *testing.T) {
			st, err := Open(context.Background(), filepath.Join(t.TempDir(), "sigil.db"), WithMaxBatch(maxBatch))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			ctx := context.Background()
			release := holdCommitter(t, st)
			q := &txQueue{t: t, st: st}
			const n = 8
			results := make([]chan error, n)
			for i := range n {
				results[i] = q.add(ctx, func(tx store.Tx) error {
					committed, err := st.AuditSize(ctx)
					if err != nil {
						return err
					}
					if want := uint64(i / maxBatch * maxBatch); committed != want {
						return fmt.Errorf("fn %d sees %d entries committed, want %d", i, committed, want)
					}
					_, err = tx.AppendAudit(ctx, testEntry(fmt.Sprint(i)))
					return err
				})
			}
			release()
			for i, ch := range results {
				if err := <-ch; err != nil {
					t.Errorf("Tx %d: %v", i, err)
				}
			}
		})
	}
}

// TestGroupCommitJoinsRunningBatch: a call that queues while a batch runs
// its fns joins that batch, and shares its COMMIT, rather than waiting for
// the next.
func TestGroupCommitJoinsRunningBatch(t *testing.T) {
	st, _ := openStore(t)
	ctx := context.Background()
	release := holdCommitter(t, st)
	q := &txQueue{t: t, st: st}
	aRan, bQueued := make(chan struct{}), make(chan struct{})
	a := q.add(ctx, func(tx store.Tx) error {
		if _, err := tx.AppendAudit(ctx, testEntry("a")); err != nil {
			return err
		}
		close(aRan)
		<-bQueued
		return nil
	})
	release()
	<-aRan
	b := make(chan error, 1)
	go func() {
		b <- st.Tx(ctx, func(tx store.Tx) error {
			inTx, err := tx.AuditSize(ctx)
			if err != nil {
				return err
			}
			committed, err := st.AuditSize(ctx)
			if err != nil {
				return err
			}
			if inTx != 1 || committed != 0 {
				return fmt.Errorf("b sees %d entries, %d committed; want 1, 0 (a's batch)", inTx, committed)
			}
			return nil
		})
	}()
	waitQueued(t, st, 1)
	close(bQueued)
	if err := <-a; err != nil {
		t.Errorf("a: %v", err)
	}
	if err := <-b; err != nil {
		t.Errorf("b: %v", err)
	}
}

func TestOpenMaxBatchInvalid(t *testing.T) {
	_, err := Open(context.Background(), filepath.Join(t.TempDir(), "sigil.db"), WithMaxBatch(0))
	if err == nil || err.Error() != "store: WithMaxBatch(0): want at least 1" {
		t.Fatalf("Open = %v", err)
	}
}

// TestGroupCommitIsolatesFailures: an fn that fails, panics, exits its
// goroutine or outlives its ctx in a batch loses its own writes, audit
// index included, and nothing else.
func TestGroupCommitIsolatesFailures(t *testing.T) {
	errBoom := errors.New("boom")
	for _, tc := range []struct {
		name string
		// fail writes, then fails; it runs on the Tx caller's goroutine.
		fail   func(ctx context.Context, cancel context.CancelFunc, tx store.Tx) error
		want   error
		panics bool
	}{
		{"error", func(_ context.Context, _ context.CancelFunc, tx store.Tx) error {
			return errBoom
		}, errBoom, false},
		{"store error", func(ctx context.Context, _ context.CancelFunc, tx store.Tx) error {
			_, err := tx.AppendAudit(ctx, testEntry("dup", "jti:a"))
			return err
		}, store.ErrConflict, false},
		{"panic", func(context.Context, context.CancelFunc, store.Tx) error {
			panic(errBoom)
		}, nil, true},
		{"goexit", func(context.Context, context.CancelFunc, store.Tx) error {
			runtime.Goexit()
			return nil
		}, nil, true},
		{"context canceled", func(ctx context.Context, cancel context.CancelFunc, tx store.Tx) error {
			cancel()
			if _, err := tx.AppendAudit(ctx, testEntry("after cancel")); !errors.Is(err, context.Canceled) {
				return fmt.Errorf("AppendAudit after cancel = %v, want context.Canceled", err)
			}
			return nil
		}, context.Canceled, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, _ := openStore(t)
			release := holdCommitter(t, st)
			q := &txQueue{t: t, st: st}
			var a, b, c uint64
			resA := q.add(context.Background(), appendFn("a", &a))
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			resB := make(chan error, 1)
			recovered := make(chan any, 1)
			go func() {
				defer func() { recovered <- recover() }()
				resB <- st.Tx(ctx, func(tx store.Tx) error {
					if err := appendFn("b", &b)(tx); err != nil {
						return err
					}
					return tc.fail(ctx, cancel, tx)
				})
			}()
			q.n++
			waitQueued(t, st, q.n)
			resC := q.add(context.Background(), appendFn("c", &c))
			release()
			if err := <-resA; err != nil || a != 0 {
				t.Errorf("Tx a = %d, %v; want index 0", a, err)
			}
			if err := <-resC; err != nil || c != 1 {
				t.Errorf("Tx c = %d, %v; want index 1, the failed Tx's", c, err)
			}
			p := <-recovered
			switch {
			case tc.panics:
				if len(resB) != 0 || (tc.name == "panic" && p != errBoom) {
					t.Errorf("Tx b returned, recovered %v; want the panic to go through", p)
				}
			case p != nil:
				t.Errorf("Tx b panicked: %v", p)
			default:
				if err := <-resB; !errors.Is(err, tc.want) {
					t.Errorf("Tx b = %v, want %v", err, tc.want)
				}
			}
			ctx = context.Background()
			if n, err := st.AuditSize(ctx); err != nil || n != 2 {
				t.Errorf("AuditSize = %d, %v; want 2", n, err)
			}
			if _, err := st.AuditIndex(ctx, "jti:b"); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("the failed Tx's key: %v, want ErrNotFound", err)
			}
			if idx, err := st.AppendAudit(ctx, testEntry("d")); err != nil || idx != 2 {
				t.Errorf("AppendAudit after the batch = %d, %v; want 2", idx, err)
			}
		})
	}
}

// TestTxCanceledBeforeStart: a caller whose ctx ends while it waits for a
// batch gets ctx.Err() at once, and its fn never runs.
func TestTxCanceledBeforeStart(t *testing.T) {
	for _, tc := range []struct {
		name   string
		ctx    func() (context.Context, context.CancelFunc)
		cancel bool // else wait for the deadline
		want   error
	}{
		{"canceled", func() (context.Context, context.CancelFunc) {
			return context.WithCancel(context.Background())
		}, true, context.Canceled},
		{"deadline", func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 300*time.Millisecond)
		}, false, context.DeadlineExceeded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, _ := openStore(t)
			release := holdCommitter(t, st)
			q := &txQueue{t: t, st: st}
			ctx, cancel := tc.ctx()
			defer cancel()
			ran := make(chan struct{}, 1)
			res := q.add(ctx, func(tx store.Tx) error {
				ran <- struct{}{}
				_, err := tx.AppendAudit(ctx, testEntry("never"))
				return err
			})
			var next uint64
			resNext := q.add(context.Background(), appendFn("next", &next))
			if tc.cancel {
				cancel()
			}
			select {
			case err := <-res:
				if !errors.Is(err, tc.want) {
					t.Errorf("Tx = %v, want %v", err, tc.want)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Tx did not return when its ctx ended")
			}
			release()
			if err := <-resNext; err != nil || next != 0 {
				t.Errorf("next Tx = %d, %v; want index 0", next, err)
			}
			if len(ran) != 0 {
				t.Error("fn of a canceled Tx ran")
			}
		})
	}
}

// TestTxCanceledWhileRunning: a ctx that ends while its fn runs, between
// statements, costs that fn its writes and nobody else theirs.
func TestTxCanceledWhileRunning(t *testing.T) {
	st, _ := openStore(t)
	release := holdCommitter(t, st)
	q := &txQueue{t: t, st: st}
	var a, b uint64
	resA := q.add(context.Background(), appendFn("a", &a))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	resMid := q.add(ctx, func(tx store.Tx) error {
		if _, err := tx.AppendAudit(ctx, testEntry("mid")); err != nil {
			return err
		}
		cancel()
		return nil
	})
	resB := q.add(context.Background(), appendFn("b", &b))
	release()
	if err := <-resMid; !errors.Is(err, context.Canceled) {
		t.Errorf("canceled Tx = %v, want context.Canceled", err)
	}
	if err := <-resA; err != nil || a != 0 {
		t.Errorf("Tx a = %d, %v", a, err)
	}
	if err := <-resB; err != nil || b != 1 {
		t.Errorf("Tx b = %d, %v; want index 1", b, err)
	}
}

// TestTxLeakedInBatch: a Tx kept past its fn cannot write into the rest
// of its batch.
func TestTxLeakedInBatch(t *testing.T) {
	st, _ := openStore(t)
	ctx := context.Background()
	release := holdCommitter(t, st)
	q := &txQueue{t: t, st: st}
	var leaked store.Tx
	res1 := q.add(ctx, func(tx store.Tx) error { leaked = tx; return nil })
	res2 := q.add(ctx, func(store.Tx) error {
		if _, err := leaked.AppendAudit(ctx, testEntry("leaked")); !errors.Is(err, sql.ErrTxDone) {
			return fmt.Errorf("leaked AppendAudit = %v, want sql.ErrTxDone", err)
		}
		if _, err := leaked.AuditSize(ctx); !errors.Is(err, sql.ErrTxDone) {
			return fmt.Errorf("leaked AuditSize = %v, want sql.ErrTxDone", err)
		}
		return nil
	})
	release()
	for _, ch := range []chan error{res1, res2} {
		if err := <-ch; err != nil {
			t.Error(err)
		}
	}
	if n, err := st.AuditSize(ctx); err != nil || n != 0 {
		t.Fatalf("AuditSize = %d, %v; want 0", n, err)
	}
}

// TestConsumeChallengeInBatch: of the consumers of one challenge queued in
// one batch, exactly one wins.
func TestConsumeChallengeInBatch(t *testing.T) {
	st, _ := openStore(t)
	ctx := context.Background()
	c := testChallenge("c1", testDevice("d1"))
	if err := st.CreateChallenge(ctx, c); err != nil {
		t.Fatal(err)
	}
	release := holdCommitter(t, st)
	q := &txQueue{t: t, st: st}
	var results []chan error
	for range 8 {
		results = append(results, q.add(ctx, func(tx store.Tx) error {
			_, err := tx.ConsumeChallenge(ctx, c.ID, t0.Add(time.Second))
			return err
		}))
	}
	release()
	wins := 0
	for i, ch := range results {
		switch err := <-ch; {
		case err == nil:
			wins++
		case !errors.Is(err, store.ErrChallengeUsed):
			t.Errorf("consumer %d: %v", i, err)
		}
	}
	if wins != 1 {
		t.Fatalf("%d consumers won, want 1", wins)
	}
}

// TestTxAloneGoexit: an fn that ends its goroutine (t.FailNow in a test)
// in a Tx that ran alone leaves no writes and a usable store.
func TestTxAloneGoexit(t *testing.T) {
	st, _ := openStore(t)
	ctx := context.Background()
	done := make(chan struct{})
	go func() {
		defer close(done)
		st.Tx(ctx, func(tx store.Tx) error {
			if _, err := tx.AppendAudit(ctx, testEntry("exits")); err != nil {
				t.Error(err)
			}
			runtime.Goexit()
			return nil
		})
		t.Error("Tx returned")
	}()
	<-done
	if idx, err := st.AppendAudit(ctx, testEntry("next")); err != nil || idx != 0 {
		t.Fatalf("AppendAudit after the goroutine exited = %d, %v; want index 0", idx, err)
	}
}
