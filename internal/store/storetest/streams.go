package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/sigil-dev/sigil/internal/store"
)

// anyLimit is a stream limit the tests that are not about it never reach.
const anyLimit = 100

func stream(id string) store.Stream {
	return store.Stream{ID: id, Receiver: "spiffe://sigil.test/workload/siem", Config: []byte(`{"aud":"siem"}`),
		CreatedAt: T0, Cursor: 7, Delivered: 7}
}

// testStreamRoundTrip: a stream reads back as stored, survives another
// handle on the database, is listed by id, updates its position and
// configuration (not its receiver), and is gone once deleted; a second
// stream of one id is ErrConflict; unknown ids are ErrNotFound.
func testStreamRoundTrip(t *testing.T, h *harness) {
	st, dsn := h.open(t)
	ctx := context.Background()
	b, a := stream("b"), stream("a")
	for _, s := range []store.Stream{b, a} {
		if err := st.CreateStream(ctx, s, anyLimit); err != nil {
			t.Fatalf("CreateStream(%s): %v", s.ID, err)
		}
	}
	if err := st.CreateStream(ctx, b, anyLimit); !errors.Is(err, store.ErrConflict) {
		t.Errorf("CreateStream of a stored id: %v, want ErrConflict", err)
	}
	other := h.reopen(t, dsn)
	if got, err := other.Stream(ctx, "b"); err != nil || !reflect.DeepEqual(got, b) {
		t.Fatalf("Stream(b) = %+v, %v; want %+v", got, err, b)
	}
	if list, err := st.Streams(ctx); err != nil || len(list) != 2 || list[0].ID != "a" || list[1].ID != "b" {
		t.Fatalf("Streams = %+v, %v; want a, b", list, err)
	}
	moved := b
	moved.Receiver, moved.CreatedAt = "spiffe://sigil.test/workload/thief", T0.Add(1)
	moved.Config, moved.Cursor, moved.Delivered, moved.Acked = []byte(`{"aud":"siem2"}`), 9, 12, []uint64{11, 12}
	moved.VerificationID, moved.VerificationState, moved.VerificationDone = 2, "nonce", 1
	if err := st.UpdateStream(ctx, moved); err != nil {
		t.Fatal(err)
	}
	want := moved
	want.Receiver, want.CreatedAt = b.Receiver, b.CreatedAt
	if got, err := other.Stream(ctx, "b"); err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("Stream(b) after update = %+v, %v; want %+v", got, err, want)
	}
	if err := st.DeleteStream(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	for name, err := range map[string]error{
		"Stream":       func() error { _, err := st.Stream(ctx, "b"); return err }(),
		"LockStream":   func() error { _, err := st.LockStream(ctx, "b"); return err }(),
		"UpdateStream": st.UpdateStream(ctx, moved),
		"DeleteStream": st.DeleteStream(ctx, "b"),
	} {
		if !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s of a deleted stream: %v, want ErrNotFound", name, err)
		}
	}
}

// testStreamRefused: streams that fail Stream.Check are not stored.
func testStreamRefused(t *testing.T, h *harness) {
	st := h.fresh(t)
	ctx := context.Background()
	if err := st.CreateStream(ctx, stream("s"), anyLimit); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		mod  func(*store.Stream)
	}{
		{"no receiver", func(s *store.Stream) { s.Receiver = "" }},
		{"no config", func(s *store.Stream) { s.Config = nil }},
		{"acked at the cursor", func(s *store.Stream) { s.Acked = []uint64{7, 8} }},
		{"acked unsorted", func(s *store.Stream) { s.Delivered, s.Acked = 10, []uint64{9, 8} }},
		{"acked beyond delivered", func(s *store.Stream) { s.Delivered, s.Acked = 8, []uint64{9} }},
		{"delivered before the cursor", func(s *store.Stream) { s.Delivered = 6 }},
		{"too many acked", func(s *store.Stream) {
			for i := range store.MaxStreamAcked + 1 {
				s.Acked = append(s.Acked, uint64(8+i))
			}
			s.Delivered = s.Acked[len(s.Acked)-1]
		}},
		{"verification done before requested", func(s *store.Stream) { s.VerificationDone = 1 }},
	} {
		s := stream("s")
		tc.mod(&s)
		if err := st.UpdateStream(ctx, s); err == nil {
			t.Errorf("UpdateStream of a stream with %s: stored", tc.name)
		}
		s.ID = "new"
		if err := st.CreateStream(ctx, s, anyLimit); err == nil {
			t.Errorf("CreateStream of a stream with %s: stored", tc.name)
		}
	}
	if got, err := st.Stream(ctx, "s"); err != nil || !reflect.DeepEqual(got, stream("s")) {
		t.Errorf("Stream(s) = %+v, %v; want it unchanged", got, err)
	}
}

// testLockStreamRace: read-modify-write of one stream through LockStream
// in a Tx, from handles of their own as replicas, loses no update.
func testLockStreamRace(t *testing.T, h *harness) {
	st, dsn := h.open(t)
	ctx := context.Background()
	if err := st.CreateStream(ctx, stream("s"), anyLimit); err != nil {
		t.Fatal(err)
	}
	handles := []store.Store{st, h.reopen(t, dsn), h.reopen(t, dsn)}
	const perHandle = 10
	var wg sync.WaitGroup
	errs := make(chan error, len(handles)*perHandle)
	for _, hd := range handles {
		wg.Go(func() {
			for range perHandle {
				errs <- hd.Tx(ctx, func(tx store.Tx) error {
					s, err := tx.LockStream(ctx, "s")
					if err != nil {
						return err
					}
					s.Delivered++
					return tx.UpdateStream(ctx, s)
				})
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	got, err := st.Stream(ctx, "s")
	if want := uint64(7 + len(handles)*perHandle); err != nil || got.Delivered != want {
		t.Fatalf("Delivered = %d, %v; want %d: %s", got.Delivered, err, want, fmt.Sprint("an update was lost"))
	}
}

// testStreamLimit: CreateStream refuses a receiver's stream beyond the
// limit with ErrLimit, storing nothing, and takes it again once one is
// deleted; other receivers' streams do not count, and a limit below one
// is refused.
func testStreamLimit(t *testing.T, h *harness) {
	st := h.fresh(t)
	ctx := context.Background()
	const limit = 2
	for _, id := range []string{"a", "b"} {
		if err := st.CreateStream(ctx, stream(id), limit); err != nil {
			t.Fatalf("CreateStream(%s) under the limit: %v", id, err)
		}
	}
	if err := st.CreateStream(ctx, stream("c"), limit); !errors.Is(err, store.ErrLimit) {
		t.Errorf("CreateStream beyond the limit: %v, want ErrLimit", err)
	}
	if _, err := st.Stream(ctx, "c"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the stream refused for the limit: %v, want ErrNotFound", err)
	}
	other := stream("d")
	other.Receiver = "spiffe://sigil.test/workload/other"
	if err := st.CreateStream(ctx, other, limit); err != nil {
		t.Errorf("CreateStream of another receiver: %v", err)
	}
	if err := st.DeleteStream(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if err := st.CreateStream(ctx, stream("c"), limit); err != nil {
		t.Errorf("CreateStream after a delete: %v", err)
	}
	for _, bad := range []int{0, -1} {
		if err := st.CreateStream(ctx, stream(fmt.Sprint("bad", bad)), bad); err == nil {
			t.Errorf("CreateStream with limit %d: stored", bad)
		}
	}
}

// testStreamLimitRace: CreateStreams of one receiver at once, from
// handles of their own as replicas, never leave it more streams than the
// limit, and every one refused is ErrLimit.
func testStreamLimitRace(t *testing.T, h *harness) {
	st, dsn := h.open(t)
	ctx := context.Background()
	handles := []store.Store{st, h.reopen(t, dsn), h.reopen(t, dsn)}
	const limit, perHandle = 3, 8
	start := make(chan struct{})
	var wg sync.WaitGroup
	var created atomic.Int32
	errs := make(chan error, len(handles)*perHandle)
	for i, hd := range handles {
		for j := range perHandle {
			wg.Go(func() {
				<-start
				err := hd.CreateStream(ctx, stream(fmt.Sprintf("s%d-%d", i, j)), limit)
				if err == nil {
					created.Add(1)
				} else if !errors.Is(err, store.ErrLimit) {
					errs <- err
				}
			})
		}
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("CreateStream: %v, want success or ErrLimit", err)
	}
	list, err := st.Streams(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != limit || created.Load() != limit {
		t.Fatalf("%d streams stored, %d creations succeeded; want %d: the limit was exceeded", len(list), created.Load(), limit)
	}
}
