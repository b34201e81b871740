package storetest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"log/slog"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sigil-dev/sigil/audit"
	"github.com/sigil-dev/sigil/internal/store"
)

// testPublisherFenced: two audit.Logs on two handles of one database, as
// two replicas. Replica B checkpoints the log of 3 entries; replica A,
// paused since it read a size of 2, then signs the tree of 2: the store
// refuses it, A publishes nothing of it, and every checkpoint A serves
// is B's. Resumed, A adopts B's checkpoint of 3 rather than a second root
// of its own.
func testPublisherFenced(t *testing.T, h *harness) {
	st, dsn := h.open(t)
	ctx := context.Background()
	AppendEntries(t, st, "e", 2)
	signer, err := audit.NewSigner("sigil.test/audit", newP256(t))
	if err != nil {
		t.Fatal(err)
	}
	paused := &frozenSize{AuditLog: store.AuditStorage(h.reopen(t, dsn)), size: 2}
	a := newLog(t, paused, signer)
	b := newLog(t, store.AuditStorage(st), signer)
	if err := a.Init(ctx); err != nil {
		t.Fatal(err)
	}
	AppendEntries(t, st, "f", 1)
	if err := b.Integrate(ctx); err != nil {
		t.Fatalf("replica B: %v", err)
	}
	if err := a.Integrate(ctx); err == nil {
		t.Fatal("replica A checkpointed a tree older than the recorded one")
	}
	assertServes(t, a, signer, 3)
	cs, err := st.Checkpoints(ctx)
	if err != nil || len(cs) != 1 || cs[0].Size != 3 {
		t.Fatalf("Checkpoints = %+v, %v; want B's of size 3 only", cs, err)
	}
	paused.size = 0 // resumed
	if err := a.Integrate(ctx); err != nil {
		t.Fatalf("replica A resumed: %v", err)
	}
	note := assertServes(t, a, signer, 3)
	if string(note) != string(cs[0].Note) {
		t.Fatal("replica A serves a second root for size 3")
	}
}

// frozenSize is an audit log whose Size stays at size, if not 0: a
// publisher paused after reading it.
type frozenSize struct {
	store.AuditLog
	size uint64
}

func (f *frozenSize) Size(ctx context.Context) (uint64, error) {
	if f.size != 0 {
		return f.size, nil
	}
	return f.AuditLog.Size(ctx)
}

func newLog(t *testing.T, s audit.Storage, signer *audit.Signer) *audit.Log {
	t.Helper()
	l, err := audit.New(s, signer, signer.Name(), audit.WithMetrics(prometheus.NewRegistry()),
		audit.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// assertServes checks l serves a checkpoint of size and returns it.
func assertServes(t *testing.T, l *audit.Log, signer *audit.Signer, size uint64) []byte {
	t.Helper()
	note, err := l.Checkpoint(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	cp, err := audit.OpenCheckpoint(note, signer.Verifier())
	if err != nil || cp.Size != size {
		t.Fatalf("serves a checkpoint of size %d (%v), want %d", cp.Size, err, size)
	}
	return note
}

func newP256(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
