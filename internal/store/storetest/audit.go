package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/sigil-dev/sigil/internal/store"
)

func testAuditAppendAndRead(t *testing.T, h *harness) {
	st := h.fresh(t)
	ctx := context.Background()
	if n, err := st.AuditSize(ctx); err != nil || n != 0 {
		t.Fatalf("AuditSize of a new log = %d, %v; want 0", n, err)
	}
	es := AppendEntries(t, st, "e", 5)
	for i, e := range es {
		if e.Index != uint64(i) {
			t.Fatalf("entry %d got index %d", i, e.Index)
		}
	}
	if n, err := st.AuditSize(ctx); err != nil || n != 5 {
		t.Fatalf("AuditSize = %d, %v; want 5", n, err)
	}
	data, err := st.AuditEntries(ctx, 1, 4)
	if err != nil || !reflect.DeepEqual(data, [][]byte{es[1].Data, es[2].Data, es[3].Data}) {
		t.Fatalf("AuditEntries(1, 4) = %q, %v", data, err)
	}
	hashes, err := st.AuditLeafHashes(ctx, 0, 5)
	if err != nil || len(hashes) != 5 || !bytes.Equal(hashes[4], es[4].LeafHash) {
		t.Fatalf("AuditLeafHashes(0, 5) = %x, %v", hashes, err)
	}
	if idx, err := st.AuditIndex(ctx, "jti:e-3"); err != nil || idx != 3 {
		t.Fatalf("AuditIndex(jti:e-3) = %d, %v; want 3", idx, err)
	}
	if _, err := st.AuditIndex(ctx, "jti:nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("AuditIndex(unknown) = %v, want ErrNotFound", err)
	}
}

func testAuditRanges(t *testing.T, h *harness) {
	st := h.fresh(t)
	AppendEntries(t, st, "e", 3)
	for _, tc := range []struct {
		name       string
		start, end uint64
		n          int
		want       error
		text       string
	}{
		{"all", 0, 3, 3, nil, ""},
		{"empty", 2, 2, 0, nil, ""},
		{"empty past the end", 7, 7, 0, nil, ""},
		{"end past the log", 1, 4, 0, store.ErrNotFound, "no entry 3"},
		{"start past the log", 5, 6, 0, store.ErrNotFound, "no entry 5"},
		{"end past int64", 1<<63 - 2, 1 << 63, 0, store.ErrNotFound, "no entry"},
		{"start after end", 2, 1, 0, nil, "start after end"},
		{"too many", 0, store.MaxAuditRange + 1, 0, nil, "more than 100000 at once"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for name, read := range map[string]func(context.Context, uint64, uint64) ([][]byte, error){
				"entries": st.AuditEntries, "leaf hashes": st.AuditLeafHashes,
			} {
				got, err := read(context.Background(), tc.start, tc.end)
				switch {
				case tc.want == nil && tc.text == "":
					if err != nil || len(got) != tc.n || got == nil {
						t.Errorf("%s = %d items, %v; want %d", name, len(got), err, tc.n)
					}
				case err == nil || (tc.want != nil && !errors.Is(err, tc.want)) ||
					!strings.Contains(err.Error(), tc.text) || !strings.HasPrefix(err.Error(), "store: audit "+name):
					t.Errorf("%s = %v, want %v %q", name, err, tc.want, tc.text)
				}
			}
		})
	}
}

func testAppendAuditInvalid(t *testing.T, h *harness) {
	st := h.fresh(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		mutate func(*store.AuditEntry)
		want   string
	}{
		{"leaf hash short", func(e *store.AuditEntry) { e.LeafHash = e.LeafHash[:31] }, "leaf hash is 31 bytes, want 32"},
		{"no leaf hash", func(e *store.AuditEntry) { e.LeafHash = nil }, "leaf hash is 0 bytes, want 32"},
		{"empty key", func(e *store.AuditEntry) { e.Keys = []string{""} }, "store: append audit entry"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := Entry("bad", "jti:bad")
			tc.mutate(&e)
			if _, err := st.AppendAudit(ctx, e); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("AppendAudit = %v, want %q", err, tc.want)
			}
		})
	}
	if n, err := st.AuditSize(ctx); err != nil || n != 0 {
		t.Fatalf("AuditSize after invalid appends = %d, %v; want 0", n, err)
	}
	// An empty entry is an RFC 6962 leaf like any other.
	e := Entry("empty")
	e.Data = nil
	if _, err := st.AppendAudit(ctx, e); err != nil {
		t.Fatal(err)
	}
	if got, err := st.AuditEntries(ctx, 0, 1); err != nil || len(got) != 1 || len(got[0]) != 0 {
		t.Fatalf("AuditEntries of an empty entry = %q, %v", got, err)
	}
}

// testAppendAuditDuplicateKey: a key already stored, or repeated in the
// entry, is ErrConflict and stores nothing of the entry, even when fn goes
// on and commits the rest of its work.
func testAppendAuditDuplicateKey(t *testing.T, h *harness) {
	for _, tc := range []struct {
		name string
		keys []string
	}{
		{"key of another entry", []string{"serial:01"}},
		{"new key and key of another entry", []string{"jti:new", "serial:01"}},
		{"key twice", []string{"jti:twice", "jti:twice"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := h.fresh(t)
			ctx := context.Background()
			if _, err := st.AppendAudit(ctx, Entry("first", "serial:01")); err != nil {
				t.Fatal(err)
			}
			ch := Challenge("c1", Device("d1"))
			err := st.Tx(ctx, func(tx store.Tx) error {
				if _, err := tx.AppendAudit(ctx, Entry("second", tc.keys...)); !errors.Is(err, store.ErrConflict) {
					t.Errorf("AppendAudit = %v, want ErrConflict", err)
				}
				return tx.CreateChallenge(ctx, ch)
			})
			if err != nil {
				t.Fatal(err)
			}
			if n, err := st.AuditSize(ctx); err != nil || n != 1 {
				t.Errorf("AuditSize = %d, %v; want 1", n, err)
			}
			if _, err := st.AuditIndex(ctx, tc.keys[0]); tc.keys[0] != "serial:01" && !errors.Is(err, store.ErrNotFound) {
				t.Errorf("key of the refused entry: %v, want ErrNotFound", err)
			}
			if _, err := st.Challenge(ctx, ch.ID); err != nil {
				t.Errorf("the rest of the Tx did not commit: %v", err)
			}
			if idx, err := st.AppendAudit(ctx, Entry("third", "jti:third")); err != nil || idx != 1 {
				t.Errorf("next AppendAudit = %d, %v; want index 1", idx, err)
			}
		})
	}
}

// testAuditWithOperation: an entry and the operation it records commit
// together or not at all.
func testAuditWithOperation(t *testing.T, h *harness) {
	errBoom := errors.New("hsm unavailable")
	for _, tc := range []struct {
		name string
		fail bool
	}{
		{"commit", false},
		{"fail after both", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := h.fresh(t)
			ctx := context.Background()
			ch := Challenge("c1", Device("d1"))
			err := st.Tx(ctx, func(tx store.Tx) error {
				if err := tx.CreateChallenge(ctx, ch); err != nil {
					return err
				}
				if _, err := tx.AppendAudit(ctx, Entry("c1", "challenge:c1")); err != nil {
					return err
				}
				if tc.fail {
					return errBoom
				}
				return nil
			})
			_, chErr := st.Challenge(ctx, ch.ID)
			n, sizeErr := st.AuditSize(ctx)
			if sizeErr != nil {
				t.Fatal(sizeErr)
			}
			if tc.fail {
				if !errors.Is(err, errBoom) || !errors.Is(chErr, store.ErrNotFound) || n != 0 {
					t.Fatalf("Tx = %v; challenge: %v, log size %d; want errBoom, ErrNotFound, 0", err, chErr, n)
				}
				return
			}
			if err != nil || chErr != nil || n != 1 {
				t.Fatalf("Tx = %v; challenge: %v, log size %d; want both stored", err, chErr, n)
			}
		})
	}
}

// testAuditOperationRefusedByStore: an operation the store refuses takes
// its entry with it.
func testAuditOperationRefusedByStore(t *testing.T, h *harness) {
	st := h.fresh(t)
	ctx := context.Background()
	ch := Challenge("c1", Device("d1"))
	if err := st.CreateChallenge(ctx, ch); err != nil {
		t.Fatal(err)
	}
	err := st.Tx(ctx, func(tx store.Tx) error {
		if _, err := tx.AppendAudit(ctx, Entry("dup", "challenge:c1")); err != nil {
			return err
		}
		return tx.CreateChallenge(ctx, ch)
	})
	if !errors.Is(err, store.ErrConflict) {
		t.Fatalf("Tx = %v, want ErrConflict", err)
	}
	if n, err := st.AuditSize(ctx); err != nil || n != 0 {
		t.Fatalf("AuditSize = %d, %v; want 0", n, err)
	}
}

func testCheckpoints(t *testing.T, h *harness) {
	st := h.fresh(t)
	ctx := context.Background()
	if note, err := st.LatestCheckpoint(ctx); note != nil || err != nil {
		t.Fatalf("LatestCheckpoint of a new log = %q, %v; want nil, nil", note, err)
	}
	if cs, err := st.Checkpoints(ctx); err != nil || len(cs) != 0 {
		t.Fatalf("Checkpoints of a new log = %v, %v", cs, err)
	}
	AppendEntries(t, st, "e", 3)
	for _, tc := range []struct {
		name string
		size uint64
		note string
		want error
		text string
	}{
		{"empty tree", 0, "note 0", nil, ""},
		{"size 2", 2, "note 2", nil, ""},
		{"size 3", 3, "note 3", nil, ""},
		{"older after newer", 1, "note 1", store.ErrConflict, "checkpoints only grow"},
		{"same again", 3, "note 3", nil, ""},
		{"same older again", 2, "note 2", nil, ""},
		{"other note for a stored size", 3, "forged note 3", store.ErrConflict, ""},
		{"other note for an older stored size", 2, "forged note 2", store.ErrConflict, ""},
		{"past the log", 4, "note 4", store.ErrNotFound, "the log has 3 entries"},
		{"empty note", 1, "", nil, "empty note"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := st.PutCheckpoint(ctx, tc.size, []byte(tc.note))
			ok := err == nil
			if tc.want != nil || tc.text != "" {
				ok = err != nil && (tc.want == nil || errors.Is(err, tc.want)) && strings.Contains(err.Error(), tc.text)
			}
			if !ok {
				t.Fatalf("PutCheckpoint(%d, %q) = %v, want %v %q", tc.size, tc.note, err, tc.want, tc.text)
			}
		})
	}
	if note, err := st.LatestCheckpoint(ctx); err != nil || string(note) != "note 3" {
		t.Fatalf("LatestCheckpoint = %q, %v; want note 3", note, err)
	}
	// A refused checkpoint leaves the rest of its Tx to commit.
	err := st.Tx(ctx, func(tx store.Tx) error {
		if err := tx.PutCheckpoint(ctx, 1, []byte("stale note 1")); !errors.Is(err, store.ErrConflict) {
			t.Errorf("PutCheckpoint of a stale size in a Tx = %v, want ErrConflict", err)
		}
		return tx.CreateChallenge(ctx, Challenge("after-stale", Device("d1")))
	})
	if err != nil {
		t.Fatalf("Tx after a refused checkpoint: %v", err)
	}
	cs, err := st.Checkpoints(ctx)
	want := []store.Checkpoint{{Size: 0, Note: []byte("note 0")}, {Size: 2, Note: []byte("note 2")}, {Size: 3, Note: []byte("note 3")}}
	if err != nil || !reflect.DeepEqual(cs, want) {
		t.Fatalf("Checkpoints = %+v, %v; want %+v", cs, err, want)
	}
}

// storage is the audit package's Storage interface, as it declares it;
// CheckpointLister is its optional extension.
type storage interface {
	Size(ctx context.Context) (uint64, error)
	LeafHashes(ctx context.Context, start, end uint64) ([][]byte, error)
	Entries(ctx context.Context, start, end uint64) ([][]byte, error)
	LatestCheckpoint(ctx context.Context) ([]byte, error)
	PutCheckpoint(ctx context.Context, size uint64, note []byte) error
}

func testAuditStorage(t *testing.T, h *harness) {
	st := h.fresh(t)
	ctx := context.Background()
	es := AppendEntries(t, st, "e", 2)
	var log storage = store.AuditStorage(st)
	if n, err := log.Size(ctx); err != nil || n != 2 {
		t.Fatalf("Size = %d, %v", n, err)
	}
	if got, err := log.Entries(ctx, 0, 2); err != nil || !bytes.Equal(got[1], es[1].Data) {
		t.Fatalf("Entries = %q, %v", got, err)
	}
	if got, err := log.LeafHashes(ctx, 1, 2); err != nil || !bytes.Equal(got[0], es[1].LeafHash) {
		t.Fatalf("LeafHashes = %x, %v", got, err)
	}
	if err := log.PutCheckpoint(ctx, 2, []byte("note 2")); err != nil {
		t.Fatal(err)
	}
	if note, err := log.LatestCheckpoint(ctx); err != nil || string(note) != "note 2" {
		t.Fatalf("LatestCheckpoint = %q, %v", note, err)
	}
	if err := log.PutCheckpoint(ctx, 1, []byte("note 1")); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("PutCheckpoint of an older size = %v, want ErrConflict", err)
	}
	lister, ok := log.(interface {
		Checkpoints(ctx context.Context) ([][]byte, error)
	})
	if !ok {
		t.Fatal("AuditLog is not a CheckpointLister")
	}
	if notes, err := lister.Checkpoints(ctx); err != nil || !reflect.DeepEqual(notes, [][]byte{[]byte("note 2")}) {
		t.Fatalf("Checkpoints = %q, %v", notes, err)
	}
	// On a Tx, the log includes the transaction's own appends.
	err := st.Tx(ctx, func(tx store.Tx) error {
		if _, err := tx.AppendAudit(ctx, Entry("in tx")); err != nil {
			return err
		}
		n, err := store.AuditStorage(tx).Size(ctx)
		if err == nil && n != 3 {
			err = fmt.Errorf("Size in the Tx = %d, want 3", n)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}
