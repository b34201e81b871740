package audit_test

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sigil-dev/sigil/audit"
	"github.com/sigil-dev/sigil/testenv"
)

// logEnv is a Log over a memStorage with a software key that can "go down".
type logEnv struct {
	st     *memStorage
	hsm    *flakySigner
	signer *audit.Signer
	log    *audit.Log
	reg    *prometheus.Registry
}

func newLogEnv(t testing.TB, opts ...audit.Option) *logEnv {
	t.Helper()
	e := &logEnv{st: newMemStorage(), hsm: &flakySigner{Signer: newKey(t)}, reg: prometheus.NewRegistry()}
	e.signer = newSigner(t, origin, e.hsm)
	e.log = e.newLog(t, opts...)
	return e
}

func (e *logEnv) newLog(t testing.TB, opts ...audit.Option) *audit.Log {
	t.Helper()
	base := []audit.Option{audit.WithLogger(testLogger(t)), audit.WithClock(newClock().now), audit.WithInterval(time.Hour)}
	l, err := audit.New(e.st, e.signer, origin, append(base, opts...)...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return l
}

func (e *logEnv) add(t testing.TB, n int) {
	t.Helper()
	size, _ := e.st.Size(t.Context())
	for i := range n {
		e.st.append(sampleEntry(t, int(size)+i))
	}
}

// latest returns the log's latest checkpoint, opened.
func (e *logEnv) latest(t testing.TB) audit.Checkpoint {
	t.Helper()
	n, err := e.log.Checkpoint(t.Context())
	if err != nil {
		t.Fatalf("Checkpoint: %v", err)
	}
	cp, err := audit.OpenCheckpoint(n, e.signer.Verifier())
	if err != nil {
		t.Fatalf("OpenCheckpoint: %v", err)
	}
	return cp
}

func (e *logEnv) integrate(t testing.TB) {
	t.Helper()
	if err := e.log.Integrate(t.Context()); err != nil {
		t.Fatalf("Integrate: %v", err)
	}
}

func TestLogIntegratesAndProves(t *testing.T) {
	ctx := t.Context()
	e := newLogEnv(t, audit.WithMetrics(prometheus.NewRegistry()))
	if _, err := e.log.Checkpoint(ctx); !errors.Is(err, audit.ErrNoCheckpoint) {
		t.Fatalf("Checkpoint before any = %v, want ErrNoCheckpoint", err)
	}
	e.integrate(t)
	if cp := e.latest(t); cp.Size != 0 || !bytes.Equal(cp.Hash, sha256Of("")) {
		t.Fatalf("the empty log's checkpoint = %+v", cp)
	}
	var roots [][]byte
	for _, n := range []int{5, 3, 1, 7} {
		e.add(t, n)
		e.integrate(t)
		cp := e.latest(t)
		want, err := audit.RootHash(ctx, e.st, cp.Size)
		if err != nil || !bytes.Equal(cp.Hash, want) {
			t.Fatalf("checkpoint root %x, want %x (%v)", cp.Hash, want, err)
		}
		if cp.Time.IsZero() {
			t.Error("checkpoint without a time")
		}
		roots = append(roots, cp.Hash)
	}
	cp := e.latest(t)
	for i := range cp.Size {
		p, err := e.log.InclusionProof(ctx, i, cp.Size)
		if err != nil {
			t.Fatal(err)
		}
		if err := audit.VerifyInclusion(e.st.hashes[i], i, cp.Size, p, cp.Hash); err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
	}
	p, err := e.log.ConsistencyProof(ctx, 5, cp.Size)
	if err != nil {
		t.Fatal(err)
	}
	if err := audit.VerifyConsistency(5, cp.Size, p, roots[0], cp.Hash); err != nil {
		t.Fatal(err)
	}
	if _, err := e.log.InclusionProof(ctx, 0, cp.Size+1); err == nil {
		t.Error("an inclusion proof for a size beyond the log")
	}
	if _, err := e.log.ConsistencyProof(ctx, 1, cp.Size+1); err == nil {
		t.Error("a consistency proof for a size beyond the log")
	}
}

func TestLogSignsOncePerBatch(t *testing.T) {
	e := newLogEnv(t, audit.WithMetrics(prometheus.NewRegistry()))
	reg := prometheus.NewRegistry()
	e.log = e.newLog(t, audit.WithMetrics(reg))
	e.add(t, 2500) // more than one storage read
	e.integrate(t)
	e.integrate(t)
	e.integrate(t)
	if got := metricValue(t, reg, "sigil_audit_checkpoints_signed_total", nil); got != 1 {
		t.Fatalf("checkpoints signed = %v, want 1", got)
	}
	if got := metricValue(t, reg, "sigil_audit_tree_size", nil); got != 2500 {
		t.Fatalf("tree size = %v, want 2500", got)
	}
	if len(e.st.checkpoints) != 1 {
		t.Fatalf("stored %d checkpoints, want 1", len(e.st.checkpoints))
	}
}

func TestLogRunWaitFor(t *testing.T) {
	e := newLogEnv(t)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- e.log.Run(ctx) }()
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 10 {
				e.st.append(sampleEntry(t, w*100+i))
				size, _ := e.st.Size(ctx)
				wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
				n, err := e.log.WaitFor(wctx, size)
				wcancel()
				if err != nil {
					t.Errorf("WaitFor(%d): %v", size, err)
					return
				}
				if cp, err := audit.OpenCheckpoint(n, e.signer.Verifier()); err != nil || cp.Size < size {
					t.Errorf("WaitFor(%d) returned %+v, %v", size, cp, err)
				}
			}
		})
	}
	wg.Wait()
	if err := e.log.Run(ctx); err == nil {
		t.Error("a second Run started")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v, want nil after cancel", err)
	}
	if cp := e.latest(t); cp.Size != 80 {
		t.Fatalf("final size %d, want 80", cp.Size)
	}
	wctx, wcancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer wcancel()
	if _, err := e.log.WaitFor(wctx, 81); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitFor beyond the log = %v, want a deadline error", err)
	}
}

// TestLogRunNudgeGap: under a stream of nudges, Run signs a checkpoint at
// most every NudgeGap, and the last entries still get one. It runs in a
// synctest bubble: the stream's one-millisecond pauses are fake time, so the
// count does not depend on how the machine schedules.
func TestLogRunNudgeGap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newLogEnv(t)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- e.log.Run(ctx) }()
		began := time.Now()
		for time.Since(began) < 10*audit.NudgeGap {
			e.add(t, 1)
			e.log.Nudge()
			time.Sleep(time.Millisecond) // fake time: the stream's pace
		}
		size, _ := e.st.Size(ctx)
		wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
		defer wcancel()
		if _, err := e.log.WaitFor(wctx, size); err != nil {
			t.Fatalf("no checkpoint of the last entries: %v", err)
		}
		elapsed := time.Since(began)
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("Run = %v", err)
		}
		notes, _ := e.st.Checkpoints(t.Context())
		if most := int(elapsed/audit.NudgeGap) + 2; len(notes) > most || len(notes) < 2 {
			t.Fatalf("%d checkpoints in %v of nudges every millisecond, want from 2 to %d", len(notes), elapsed, most)
		}
	})
}

// TestLogHSMDown: a failing signer is counted and retried; Run goes on and
// checkpoints once the HSM is back.
func TestLogHSMDown(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := newLogEnv(t)
	e.log = e.newLog(t, audit.WithMetrics(reg), audit.WithInterval(5*time.Millisecond))
	e.hsm.down.Store(true)
	e.add(t, 3)
	if err := e.log.Integrate(t.Context()); !errors.Is(err, errHSMDown) {
		t.Fatalf("Integrate with the HSM down = %v, want %v", err, errHSMDown)
	}
	if got := metricValue(t, reg, "sigil_audit_integration_lag_entries", nil); got != 3 {
		t.Errorf("lag = %v, want 3", got)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- e.log.Run(ctx) }()
	testenv.WaitFor(t, 5*time.Second, "Run to retry signing three times", func() bool {
		return metricValue(t, reg, "sigil_audit_checkpoint_failures_total", map[string]string{"stage": "sign"}) >= 3
	})
	e.hsm.down.Store(false)
	wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
	defer wcancel()
	if _, err := e.log.WaitFor(wctx, 3); err != nil {
		t.Fatalf("no checkpoint once the HSM is back: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v", err)
	}
	if got := metricValue(t, reg, "sigil_audit_integration_lag_entries", nil); got != 0 {
		t.Errorf("lag = %v, want 0", got)
	}
}

func TestLogStoreFailure(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := newLogEnv(t)
	e.log = e.newLog(t, audit.WithMetrics(reg))
	e.add(t, 2)
	errDB := errors.New("database is locked")
	e.st.putErr = errDB
	if err := e.log.Integrate(t.Context()); !errors.Is(err, errDB) {
		t.Fatalf("Integrate = %v, want %v", err, errDB)
	}
	if got := metricValue(t, reg, "sigil_audit_checkpoint_failures_total", map[string]string{"stage": "store"}); got != 1 {
		t.Errorf("store failures = %v, want 1", got)
	}
	e.st.putErr = nil
	e.integrate(t)
	if cp := e.latest(t); cp.Size != 2 {
		t.Fatalf("size %d, want 2", cp.Size)
	}
}

// TestLogAdoptsAnotherReplicasCheckpoint: two Logs on one storage; the
// second to store a size gets a conflict and serves the stored note.
func TestLogAdoptsAnotherReplicasCheckpoint(t *testing.T) {
	e := newLogEnv(t)
	other := e.newLog(t)
	e.add(t, 4)
	if err := other.Init(t.Context()); err != nil {
		t.Fatal(err)
	}
	e.integrate(t)
	if err := other.Integrate(t.Context()); err != nil {
		t.Fatalf("second replica: %v", err)
	}
	a, _ := e.log.Checkpoint(t.Context())
	b, _ := other.Checkpoint(t.Context())
	if !bytes.Equal(a, b) {
		t.Fatal("the replicas serve different notes for the same size")
	}
}

// TestLogRefusesTamperedStorage: at start, the storage must match the
// log's own latest checkpoint.
func TestLogRefusesTamperedStorage(t *testing.T) {
	for _, tc := range []struct {
		name   string
		tamper func(t *testing.T, e *logEnv)
	}{
		{"entry edited", func(t *testing.T, e *logEnv) {
			e.st.edit(func(es [][]byte) [][]byte { es[2] = sampleEntry(t, 99); return es })
		}},
		{"entry data edited, its leaf hash kept", func(t *testing.T, e *logEnv) {
			e.st.entries[2] = sampleEntry(t, 99)
		}},
		{"entries removed", func(t *testing.T, e *logEnv) {
			e.st.edit(func(es [][]byte) [][]byte { return es[:3] })
		}},
		{"checkpoint forged with another key", func(t *testing.T, e *logEnv) {
			forger := newSigner(t, origin, newKey(t))
			n, _ := forger.Sign(audit.Checkpoint{Origin: origin, Size: 6, Hash: sha256Of("x")})
			e.st.checkpoints[6] = n
		}},
		{"checkpoint of another origin", func(t *testing.T, e *logEnv) {
			n, _ := newSigner(t, "other.example/log", e.hsm).Sign(audit.Checkpoint{Origin: "other.example/log", Size: 6, Hash: sha256Of("x")})
			e.st.checkpoints[6] = n
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newLogEnv(t)
			e.add(t, 5)
			e.integrate(t)
			tc.tamper(t, e)
			restarted := e.newLog(t)
			if err := restarted.Init(t.Context()); !errors.Is(err, audit.ErrTampered) {
				t.Fatalf("Init = %v, want ErrTampered", err)
			}
			if err := restarted.Run(t.Context()); !errors.Is(err, audit.ErrTampered) {
				t.Fatalf("Run = %v, want ErrTampered", err)
			}
		})
	}
}

func TestLogRefusesBadLeafHashes(t *testing.T) {
	e := newLogEnv(t)
	e.add(t, 3)
	e.st.hashes[1] = sha256Of("not the entry")
	if err := e.log.Integrate(t.Context()); !errors.Is(err, audit.ErrTampered) {
		t.Fatalf("Integrate = %v, want ErrTampered", err)
	}
	if err := e.log.Run(t.Context()); !errors.Is(err, audit.ErrTampered) {
		t.Fatalf("Run = %v, want ErrTampered", err)
	}
}

func TestLogRefusesShrinkingStorage(t *testing.T) {
	e := newLogEnv(t)
	e.add(t, 5)
	e.integrate(t)
	e.st.edit(func(es [][]byte) [][]byte { return es[:4] })
	if err := e.log.Integrate(t.Context()); !errors.Is(err, audit.ErrTampered) {
		t.Fatalf("Integrate = %v, want ErrTampered", err)
	}
}

func TestNewValidates(t *testing.T) {
	st := newMemStorage()
	s := newSigner(t, origin, newKey(t))
	reg := prometheus.NewRegistry()
	if _, err := audit.New(st, s, origin, audit.WithMetrics(reg)); err != nil {
		t.Fatal(err)
	}
	for name, f := range map[string]func() error{
		"origin is not the key name": func() error { _, err := audit.New(st, s, "other.example/log"); return err },
		"nil storage":                func() error { _, err := audit.New(nil, s, origin); return err },
		"nil signer":                 func() error { _, err := audit.New(st, nil, origin); return err },
		"zero interval":              func() error { _, err := audit.New(st, s, origin, audit.WithInterval(0)); return err },
		"nil logger":                 func() error { _, err := audit.New(st, s, origin, audit.WithLogger(nil)); return err },
		"nil clock":                  func() error { _, err := audit.New(st, s, origin, audit.WithClock(nil)); return err },
		"metrics registered twice":   func() error { _, err := audit.New(st, s, origin, audit.WithMetrics(reg)); return err },
	} {
		if f() == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
}
