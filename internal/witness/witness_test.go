package witness_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"golang.org/x/mod/sumdb/note"

	"github.com/sigil-dev/sigil/audit"
	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/internal/store/sqlite"
	"github.com/sigil-dev/sigil/internal/store/storetest"
	"github.com/sigil-dev/sigil/internal/witness"
	"github.com/sigil-dev/sigil/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const origin = "sigil.test/witness-test"

// testLog is an audit log over a SQLite store, signed by a software key.
type testLog struct {
	st  store.Store
	log *audit.Log
	key *ecdsa.PrivateKey
	v   *audit.Verifier
}

func newTestLog(t *testing.T, key *ecdsa.PrivateKey) *testLog {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "sigil.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if key == nil {
		if key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			t.Fatal(err)
		}
	}
	s, err := audit.NewSigner(origin, key)
	if err != nil {
		t.Fatal(err)
	}
	l, err := audit.New(store.AuditStorage(st), s, origin, audit.WithInterval(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	return &testLog{st: st, log: l, key: key, v: s.Verifier()}
}

// grow appends n entries named prefix-i and checkpoints them.
func (l *testLog) grow(t *testing.T, prefix string, n int) {
	t.Helper()
	storetest.AppendEntries(t, l.st, prefix, n)
	if err := l.log.Integrate(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func (l *testLog) witnessLog() testenv.WitnessLog {
	return testenv.WitnessLog{Origin: origin, PublicKey: l.v.WitnessKey()}
}

// cosign runs a Cosigner of l for ws until the test ends.
func (l *testLog) cosign(t *testing.T, reg prometheus.Registerer, ws []*witness.Client, opts ...witness.Option) {
	t.Helper()
	opts = append(opts, witness.WithRetry(20*time.Millisecond), witness.WithMetrics(reg))
	c, err := witness.New(l.log, store.AuditStorage(l.st), l.v, ws, opts...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = c.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

// published is the served checkpoint.
func (l *testLog) published(t *testing.T) []byte {
	t.Helper()
	n, err := witness.NewPublished(l.log, store.AuditStorage(l.st)).Checkpoint(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// waitCosigned waits until the published checkpoint of size is cosigned
// by every witness of vs.
func (l *testLog) waitCosigned(t *testing.T, size uint64, vs []note.Verifier) []byte {
	t.Helper()
	var pub []byte
	testenv.WaitForNil(t, 30*time.Second, "the checkpoint to be cosigned", func() error {
		pub = l.published(t)
		cp, err := audit.OpenCheckpoint(pub, l.v)
		if err != nil {
			return err
		}
		if cp.Size != size {
			return errors.New("not the checkpoint of the size expected yet")
		}
		_, err = audit.RequireCosignatures(pub, l.v, vs, len(vs))
		return err
	})
	return pub
}

func client(t *testing.T, w *testenv.Witness) *witness.Client {
	t.Helper()
	c, err := witness.NewClient(w.URL, w.Key, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestCosignedByRealWitnesses: two omniwitnesses cosign each new
// checkpoint, the second and later ones with a consistency proof from the
// one they cosigned before; the published checkpoint carries both
// cosignatures and an auditor requiring both accepts it.
func TestCosignedByRealWitnesses(t *testing.T) {
	t.Parallel()
	l := newTestLog(t, nil)
	w1 := testenv.StartWitness(t, "witness-one.test", l.witnessLog())
	w2 := testenv.StartWitness(t, "witness-two.test", l.witnessLog())
	c1, c2 := client(t, w1), client(t, w2)
	vs := []note.Verifier{c1.Verifier(), c2.Verifier()}
	reg := prometheus.NewRegistry()
	l.grow(t, "a", 5)
	l.cosign(t, reg, []*witness.Client{c1, c2})
	l.waitCosigned(t, 5, vs)
	for i, n := range []int{3, 300} { // 300: a proof across a stored subtree
		l.grow(t, "b"+string(rune('0'+i)), n)
	}
	pub := l.waitCosigned(t, 308, vs)
	if have, err := audit.Cosigners(pub, l.v, vs); err != nil || len(have) != 2 {
		t.Fatalf("Cosigners = %v, %v", have, err)
	}
	if got := gauge(t, reg, "sigil_audit_witness_cosigned_size", c1.ID()); got != 308 {
		t.Errorf("sigil_audit_witness_cosigned_size{%s} = %v, want 308", c1.ID(), got)
	}
}

// TestSplitViewNeedsCollusion: the log key signs a second tree (a fork:
// other entries at the same indices). A witness that has cosigned the
// first refuses the fork's checkpoint, of the same size or larger, so the
// fork's published checkpoint has no cosignature and an auditor that
// requires one rejects it.
func TestSplitViewNeedsCollusion(t *testing.T) {
	t.Parallel()
	honest := newTestLog(t, nil)
	fork := newTestLog(t, honest.key)
	w := testenv.StartWitness(t, "witness.test", honest.witnessLog())
	c := client(t, w)
	vs := []note.Verifier{c.Verifier()}
	honest.grow(t, "real", 4)
	honest.cosign(t, prometheus.NewRegistry(), []*witness.Client{c})
	honest.waitCosigned(t, 4, vs)

	fork.grow(t, "forged", 4)
	ctx := context.Background()
	signed, err := fork.log.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	forWitness, err := audit.WitnessNote(signed, fork.v)
	if err != nil {
		t.Fatal(err)
	}
	// tlog-witness answers 409 for another root at the size it has;
	// omniwitness checks the empty proof from 4 to 4 first (422).
	if _, err := c.AddCheckpoint(ctx, 4, nil, forWitness, signed); !errors.Is(err, witness.ErrConflict) && !errors.Is(err, witness.ErrInconsistent) {
		t.Fatalf("the fork's checkpoint of the same size: %v, want ErrConflict or ErrInconsistent", err)
	}
	fork.grow(t, "forged-more", 2)
	signed, _ = fork.log.Checkpoint(ctx)
	forWitness, _ = audit.WitnessNote(signed, fork.v)
	proof, err := fork.log.ConsistencyProof(ctx, 4, 6)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.AddCheckpoint(ctx, 4, proof, forWitness, signed); !errors.Is(err, witness.ErrInconsistent) {
		t.Fatalf("the fork's larger checkpoint: %v, want ErrInconsistent", err)
	}
	reg := prometheus.NewRegistry()
	fork.cosign(t, reg, []*witness.Client{c})
	testenv.WaitFor(t, 30*time.Second, "the fork's submissions to be refused", func() bool {
		return submissions(t, reg, c.ID(), "inconsistent") >= 1
	})
	var we *audit.WitnessError
	if _, err := audit.RequireCosignatures(fork.published(t), fork.v, vs, 1); !errors.As(err, &we) || len(we.Missing) != 1 {
		t.Fatalf("the fork's published checkpoint: %v, want a WitnessError missing the witness", err)
	}
}

// TestWitnessDownCatchesUp: while the witness is down the log keeps
// publishing, the lag metric grows and the published checkpoint is not
// cosigned; once it is back, the latest checkpoint is cosigned (one
// consistency proof across what it missed) and the lag is zero.
func TestWitnessDownCatchesUp(t *testing.T) {
	t.Parallel()
	l := newTestLog(t, nil)
	w := testenv.StartWitness(t, "witness.test", l.witnessLog())
	c := client(t, w)
	vs := []note.Verifier{c.Verifier()}
	reg := prometheus.NewRegistry()
	l.grow(t, "a", 2)
	l.cosign(t, reg, []*witness.Client{c})
	l.waitCosigned(t, 2, vs)

	if err := w.Stop(); err != nil {
		t.Fatal(err)
	}
	l.grow(t, "b", 7)
	lag := func() float64 { return gauge(t, reg, "sigil_audit_witness_lag_entries", c.ID()) }
	testenv.WaitFor(t, 30*time.Second, "the lag metric to show 7 entries", func() bool { return lag() == 7 })
	testenv.WaitFor(t, 30*time.Second, "a submission to fail as unreachable", func() bool {
		return submissions(t, reg, c.ID(), "unreachable") >= 1
	})
	if cp, err := audit.OpenCheckpoint(l.published(t), l.v); err != nil || cp.Size != 9 {
		t.Fatalf("published while the witness is down: %+v, %v; want size 9", cp, err)
	}
	if _, err := audit.RequireCosignatures(l.published(t), l.v, vs, 1); !errors.Is(err, audit.ErrTooFewCosignatures) {
		t.Fatalf("cosignatures while the witness is down: %v", err)
	}
	l.grow(t, "c", 1)
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	l.waitCosigned(t, 10, vs)
	testenv.WaitFor(t, 10*time.Second, "the lag metric to be 0", func() bool { return lag() == 0 })
}

// flipLease is a lease a test hands over.
type flipLease struct {
	lead  atomic.Bool
	asked atomic.Int64
}

func (f *flipLease) Leading(context.Context) (bool, error) {
	f.asked.Add(1)
	return f.lead.Load(), nil
}

// TestOnlyTheLeaseHolderSubmits: a replica that does not hold the
// checkpoint lease posts nothing to the witness; once it leads it does.
func TestOnlyTheLeaseHolderSubmits(t *testing.T) {
	t.Parallel()
	l := newTestLog(t, nil)
	w := testenv.StartWitness(t, "witness.test", l.witnessLog())
	c := client(t, w)
	lease := &flipLease{}
	reg := prometheus.NewRegistry()
	l.grow(t, "a", 3)
	l.cosign(t, reg, []*witness.Client{c}, witness.WithLease(lease))
	// Let the follower go round a few times; it would have submitted in
	// the first.
	testenv.WaitFor(t, 10*time.Second, "the follower to ask the lease 3 times (or to submit)", func() bool {
		lines, err := l.st.Cosignatures(context.Background(), 3)
		return lease.asked.Load() >= 3 || err != nil || len(lines) > 0
	})
	if lines, err := l.st.Cosignatures(context.Background(), 3); err != nil || len(lines) != 0 {
		t.Fatalf("a follower's cosignatures: %q, %v; want none", lines, err)
	}
	for _, res := range []string{"cosigned", "unreachable", "refused", "inconsistent", "other"} {
		if v := submissions(t, reg, c.ID(), res); v != 0 {
			t.Fatalf("a follower submitted: %s = %v", res, v)
		}
	}
	lease.lead.Store(true)
	l.waitCosigned(t, 3, []note.Verifier{c.Verifier()})
}

// TestRefusedUnderAnotherKey: a witness configured with another key for
// the origin refuses the checkpoint (403), and so does one given the
// log's note without the signature under the key ID it knows.
func TestRefusedUnderAnotherKey(t *testing.T) {
	t.Parallel()
	l := newTestLog(t, nil)
	other := newTestLog(t, nil) // another key under the same origin: 403
	w := testenv.StartWitness(t, "witness.test", other.witnessLog())
	c := client(t, w)
	l.grow(t, "a", 1)
	signed, _ := l.log.Checkpoint(context.Background())
	forWitness, _ := audit.WitnessNote(signed, l.v)
	// tlog-witness says 403; omniwitness answers 500 when no signature
	// verifies (its Update does not wrap the parse error as
	// ErrNoValidSignature).
	knows := client(t, testenv.StartWitness(t, "witness-two.test", l.witnessLog()))
	for _, tc := range []struct {
		name   string
		w      *witness.Client
		submit []byte
	}{
		{"under a key the witness does not have", c, forWitness},
		{"without the witness-compatible signature", knows, signed},
	} {
		_, err := tc.w.AddCheckpoint(context.Background(), 0, nil, tc.submit, signed)
		var se *witness.SubmitError
		if !errors.As(err, &se) || (se.Status != 403 && se.Status != 500) {
			t.Fatalf("a checkpoint %s: %v, want a refusal (403, or omniwitness's 500)", tc.name, err)
		}
	}
	if _, err := knows.AddCheckpoint(context.Background(), 0, nil, forWitness, signed); err != nil {
		t.Fatalf("the witness that knows the key: %v", err)
	}
	if !strings.Contains(l.v.WitnessKey(), origin+"+") {
		t.Fatalf("WitnessKey = %q", l.v.WitnessKey())
	}
}

// gauge reads the gauge name{witness=id} from reg (0 if absent).
func gauge(t *testing.T, reg *prometheus.Registry, name, id string) float64 {
	t.Helper()
	m := metric(t, reg, name, map[string]string{"witness": id})
	if m == nil {
		return 0
	}
	return m.GetGauge().GetValue()
}

// submissions reads sigil_audit_witness_submissions_total{witness=id,result=res}.
func submissions(t *testing.T, reg *prometheus.Registry, id, res string) float64 {
	t.Helper()
	m := metric(t, reg, "sigil_audit_witness_submissions_total", map[string]string{"witness": id, "result": res})
	if m == nil {
		t.Fatalf("no sigil_audit_witness_submissions_total{witness=%q,result=%q}", id, res)
	}
	return m.GetCounter().GetValue()
}

func metric(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) *dto.Metric {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	next:
		for _, m := range f.GetMetric() {
			for _, lp := range m.GetLabel() {
				if labels[lp.GetName()] != lp.GetValue() {
					continue next
				}
			}
			return m
		}
	}
	return nil
}

// TestRestartedCosignerLearnsTheWitnessSize: a Cosigner that starts
// knowing nothing of a witness that has cosigned before (sigild
// restarted) submits from size 0, learns the witness's size from its 409
// and cosigns with a consistency proof from there.
func TestRestartedCosignerLearnsTheWitnessSize(t *testing.T) {
	t.Parallel()
	l := newTestLog(t, nil)
	w := testenv.StartWitness(t, "witness.test", l.witnessLog())
	c := client(t, w)
	vs := []note.Verifier{c.Verifier()}
	l.grow(t, "a", 3)
	signed, _ := l.log.Checkpoint(context.Background())
	forWitness, _ := audit.WitnessNote(signed, l.v)
	if _, err := c.AddCheckpoint(context.Background(), 0, nil, forWitness, signed); err != nil {
		t.Fatal(err)
	}
	l.grow(t, "b", 4)
	var stale *witness.SizeError
	signed, _ = l.log.Checkpoint(context.Background())
	forWitness, _ = audit.WitnessNote(signed, l.v)
	if _, err := c.AddCheckpoint(context.Background(), 0, nil, forWitness, signed); !errors.As(err, &stale) || stale.Size != 3 {
		t.Fatalf("a submission from 0 to a witness at 3: %v, want SizeError 3", err)
	}
	l.cosign(t, prometheus.NewRegistry(), []*witness.Client{c})
	l.waitCosigned(t, 7, vs)
}
