package audit_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/sigil-dev/sigil/audit"
)

// lease is an audit.Lease a test hands over: leading while lead is set;
// answers counts the questions asked.
type lease struct {
	lead    atomic.Bool
	answers atomic.Int64
	// after, if set, runs after each answer (a pause, a takeover).
	after func()
}

func (l *lease) Leading(context.Context) (bool, error) {
	ok := l.lead.Load()
	l.answers.Add(1)
	if l.after != nil {
		l.after()
	}
	return ok, nil
}

// countingStorage counts the checkpoints a Log stores.
type countingStorage struct {
	*memStorage
	puts atomic.Int64
}

func (s *countingStorage) PutCheckpoint(ctx context.Context, size uint64, note []byte) error {
	s.puts.Add(1)
	return s.memStorage.PutCheckpoint(ctx, size, note)
}

func newReplica(t *testing.T, st audit.Storage, signer *audit.Signer, l audit.Lease) *audit.Log {
	t.Helper()
	log, err := audit.New(st, signer, origin, audit.WithLease(l), audit.WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	return log
}

// TestFollowerNeverSigns: of two Logs over one storage, the one without
// the lease stores no checkpoint of its own and serves the leader's, once
// it covers the entries; when the lease moves, the new leader signs on
// from the old one's tree.
func TestFollowerNeverSigns(t *testing.T) {
	ctx := t.Context()
	mem := newMemStorage()
	signer := newSigner(t, origin, newKey(t))
	a, b := &countingStorage{memStorage: mem}, &countingStorage{memStorage: mem}
	la, lb := &lease{}, &lease{}
	la.lead.Store(true)
	leader, follower := newReplica(t, a, signer, la), newReplica(t, b, signer, lb)
	for i := range 5 {
		mem.append(sampleEntry(t, i))
	}
	if err := follower.Integrate(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := follower.Checkpoint(ctx); !errors.Is(err, audit.ErrNoCheckpoint) {
		t.Fatalf("follower's checkpoint before the leader signed: %v, want ErrNoCheckpoint", err)
	}
	if err := leader.Integrate(ctx); err != nil {
		t.Fatal(err)
	}
	want, err := leader.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got, err := follower.Checkpoint(ctx)
	if err != nil || string(got) != string(want) {
		t.Fatalf("follower serves %q, %v; want the leader's %q", got, err, want)
	}
	if err := follower.Integrate(ctx); err != nil {
		t.Fatal(err)
	}
	waitCtx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := follower.WaitFor(waitCtx, 5); err != nil {
		t.Fatalf("follower has not adopted the leader's checkpoint of 5: %v", err)
	}
	if n := b.puts.Load(); n != 0 {
		t.Fatalf("the follower stored %d checkpoints", n)
	}
	// The lease moves.
	la.lead.Store(false)
	lb.lead.Store(true)
	mem.append(sampleEntry(t, 5))
	if err := leader.Integrate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := follower.Integrate(ctx); err != nil {
		t.Fatal(err)
	}
	if a.puts.Load() != 1 || b.puts.Load() != 1 {
		t.Fatalf("checkpoints stored by the old leader %d, the new %d; want 1 and 1", a.puts.Load(), b.puts.Load())
	}
	if err := leader.Integrate(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := leader.WaitFor(waitCtx, 6); err != nil {
		t.Fatalf("the old leader does not serve the new one's checkpoint of 6: %v", err)
	}
}

// TestLeaseLostBeforeSigning: a leader whose lease is taken while it reads
// the new entries (it was paused) signs nothing.
func TestLeaseLostBeforeSigning(t *testing.T) {
	mem := newMemStorage()
	st := &countingStorage{memStorage: mem}
	l := &lease{}
	l.lead.Store(true)
	l.after = func() { l.lead.Store(false) } // lost right after the first answer
	log := newReplica(t, st, newSigner(t, origin, newKey(t)), l)
	mem.append(sampleEntry(t, 0), sampleEntry(t, 1))
	if err := log.Integrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	if l.answers.Load() < 2 {
		t.Fatalf("the lease was asked %d times; want again just before signing", l.answers.Load())
	}
	if n := st.puts.Load(); n != 0 {
		t.Fatalf("a leader that lost its lease before signing stored %d checkpoints", n)
	}
}

// TestFollowerRefusesAForeignRoot: a follower does not serve a stored
// checkpoint, validly signed, whose root is not that of the stored
// entries (the database was rewritten under the log).
func TestFollowerRefusesAForeignRoot(t *testing.T) {
	ctx := t.Context()
	signer := newSigner(t, origin, newKey(t))
	forged := newMemStorage()
	for i := range 3 {
		forged.append(sampleEntry(t, 100+i))
	}
	always := &lease{}
	always.lead.Store(true)
	forger := newReplica(t, forged, signer, always)
	if err := forger.Integrate(ctx); err != nil {
		t.Fatal(err)
	}
	note, err := forger.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	mem := newMemStorage()
	for i := range 4 {
		mem.append(sampleEntry(t, i))
	}
	follower := newReplica(t, mem, signer, &lease{})
	if err := follower.Integrate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := mem.PutCheckpoint(ctx, 3, note); err != nil {
		t.Fatal(err)
	}
	if err := follower.Integrate(ctx); !errors.Is(err, audit.ErrTampered) {
		t.Fatalf("follower adopting a checkpoint of other entries: %v, want ErrTampered", err)
	}
}
