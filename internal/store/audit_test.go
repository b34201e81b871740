package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
)

func testEntry(name string, keys ...string) AuditEntry {
	data := []byte(`{"kind":"test","name":"` + name + `"}`)
	h := sha256.Sum256(append([]byte{0}, data...))
	return AuditEntry{Data: data, LeafHash: h[:], Keys: keys, CreatedAt: t0}
}

// appendEntries appends n entries named prefix-i, each in a Tx of its own.
func appendEntries(t testing.TB, st Store, prefix string, n int) []AuditEntry {
	t.Helper()
	var es []AuditEntry
	for i := range n {
		e := testEntry(fmt.Sprintf("%s-%d", prefix, i), fmt.Sprintf("jti:%s-%d", prefix, i))
		idx, err := st.AppendAudit(context.Background(), e)
		if err != nil {
			t.Fatal(err)
		}
		e.Index = idx
		es = append(es, e)
	}
	return es
}

func TestAuditAppendAndRead(t *testing.T) {
	st, _ := openStore(t)
	ctx := context.Background()
	if n, err := st.AuditSize(ctx); err != nil || n != 0 {
		t.Fatalf("AuditSize of a new log = %d, %v; want 0", n, err)
	}
	es := appendEntries(t, st, "e", 5)
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
	if _, err := st.AuditIndex(ctx, "jti:nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("AuditIndex(unknown) = %v, want ErrNotFound", err)
	}
}

func TestAuditRanges(t *testing.T) {
	st, _ := openStore(t)
	appendEntries(t, st, "e", 3)
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
		{"end past the log", 1, 4, 0, ErrNotFound, "no entry 3"},
		{"start past the log", 5, 6, 0, ErrNotFound, "no entry 5"},
		{"end past int64", 1<<63 - 2, 1 << 63, 0, ErrNotFound, "no entry"},
		{"start after end", 2, 1, 0, nil, "start after end"},
		{"too many", 0, MaxAuditRange + 1, 0, nil, "more than 100000 at once"},
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

func TestAppendAuditInvalid(t *testing.T) {
	st, _ := openStore(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		mutate func(*AuditEntry)
		want   string
	}{
		{"leaf hash short", func(e *AuditEntry) { e.LeafHash = e.LeafHash[:31] }, "leaf hash is 31 bytes, want 32"},
		{"no leaf hash", func(e *AuditEntry) { e.LeafHash = nil }, "leaf hash is 0 bytes, want 32"},
		{"empty key", func(e *AuditEntry) { e.Keys = []string{""} }, "CHECK constraint failed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := testEntry("bad", "jti:bad")
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
	e := testEntry("empty")
	e.Data = nil
	if _, err := st.AppendAudit(ctx, e); err != nil {
		t.Fatal(err)
	}
	if got, err := st.AuditEntries(ctx, 0, 1); err != nil || len(got) != 1 || len(got[0]) != 0 {
		t.Fatalf("AuditEntries of an empty entry = %q, %v", got, err)
	}
}

// TestAppendAuditDuplicateKey: a key already stored, or repeated in the
// entry, is ErrConflict and stores nothing of the entry, even when fn goes
// on and commits the rest of its work.
func TestAppendAuditDuplicateKey(t *testing.T) {
	for _, tc := range []struct {
		name string
		keys []string
	}{
		{"key of another entry", []string{"serial:01"}},
		{"new key and key of another entry", []string{"jti:new", "serial:01"}},
		{"key twice", []string{"jti:twice", "jti:twice"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, _ := openStore(t)
			ctx := context.Background()
			if _, err := st.AppendAudit(ctx, testEntry("first", "serial:01")); err != nil {
				t.Fatal(err)
			}
			ch := testChallenge("c1", testDevice("d1"))
			err := st.Tx(ctx, func(tx Tx) error {
				if _, err := tx.AppendAudit(ctx, testEntry("second", tc.keys...)); !errors.Is(err, ErrConflict) {
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
			if _, err := st.AuditIndex(ctx, tc.keys[0]); tc.keys[0] != "serial:01" && !errors.Is(err, ErrNotFound) {
				t.Errorf("key of the refused entry: %v, want ErrNotFound", err)
			}
			if _, err := st.Challenge(ctx, ch.ID); err != nil {
				t.Errorf("the rest of the Tx did not commit: %v", err)
			}
			if idx, err := st.AppendAudit(ctx, testEntry("third", "jti:third")); err != nil || idx != 1 {
				t.Errorf("next AppendAudit = %d, %v; want index 1", idx, err)
			}
		})
	}
}

// TestAuditWithOperation: an entry and the operation it records commit
// together or not at all.
func TestAuditWithOperation(t *testing.T) {
	errBoom := errors.New("hsm unavailable")
	for _, tc := range []struct {
		name string
		fail bool
	}{
		{"commit", false},
		{"fail after both", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, _ := openStore(t)
			ctx := context.Background()
			ch := testChallenge("c1", testDevice("d1"))
			err := st.Tx(ctx, func(tx Tx) error {
				if err := tx.CreateChallenge(ctx, ch); err != nil {
					return err
				}
				if _, err := tx.AppendAudit(ctx, testEntry("c1", "challenge:c1")); err != nil {
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
				if !errors.Is(err, errBoom) || !errors.Is(chErr, ErrNotFound) || n != 0 {
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

// TestAuditOperationRefusedByStore: an operation the store refuses takes
// its entry with it.
func TestAuditOperationRefusedByStore(t *testing.T) {
	st, _ := openStore(t)
	ctx := context.Background()
	ch := testChallenge("c1", testDevice("d1"))
	if err := st.CreateChallenge(ctx, ch); err != nil {
		t.Fatal(err)
	}
	err := st.Tx(ctx, func(tx Tx) error {
		if _, err := tx.AppendAudit(ctx, testEntry("dup", "challenge:c1")); err != nil {
			return err
		}
		return tx.CreateChallenge(ctx, ch)
	})
	if !errors.Is(err, ErrConflict) {
		t.Fatalf("Tx = %v, want ErrConflict", err)
	}
	if n, err := st.AuditSize(ctx); err != nil || n != 0 {
		t.Fatalf("AuditSize = %d, %v; want 0", n, err)
	}
}

func TestCheckpoints(t *testing.T) {
	st, _ := openStore(t)
	ctx := context.Background()
	if note, err := st.LatestCheckpoint(ctx); note != nil || err != nil {
		t.Fatalf("LatestCheckpoint of a new log = %q, %v; want nil, nil", note, err)
	}
	if cs, err := st.Checkpoints(ctx); err != nil || len(cs) != 0 {
		t.Fatalf("Checkpoints of a new log = %v, %v", cs, err)
	}
	appendEntries(t, st, "e", 3)
	for _, tc := range []struct {
		name string
		size uint64
		note string
		want error
		text string
	}{
		{"empty tree", 0, "note 0", nil, ""},
		{"size 3", 3, "note 3", nil, ""},
		{"older after newer", 2, "note 2", nil, ""},
		{"same again", 3, "note 3", nil, ""},
		{"other note for a stored size", 3, "forged note 3", ErrConflict, ""},
		{"past the log", 4, "note 4", ErrNotFound, "the log has 3 entries"},
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
	cs, err := st.Checkpoints(ctx)
	want := []Checkpoint{{0, []byte("note 0")}, {2, []byte("note 2")}, {3, []byte("note 3")}}
	if err != nil || !reflect.DeepEqual(cs, want) {
		t.Fatalf("Checkpoints = %+v, %v; want %+v", cs, err, want)
	}
}

// TestAuditAppendOnly: the database itself refuses to change or remove an
// entry, a key or a checkpoint, or to leave a gap.
func TestAuditAppendOnly(t *testing.T) {
	st, path := openStore(t)
	appendEntries(t, st, "e", 2)
	if err := st.PutCheckpoint(context.Background(), 2, []byte("note")); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range []string{
		`UPDATE audit_entries SET data = x'00' WHERE idx = 0`,
		`DELETE FROM audit_entries WHERE idx = 1`,
		`INSERT INTO audit_entries VALUES (3, x'00', zeroblob(32), 0)`,
		`INSERT INTO audit_entries VALUES (1, x'00', zeroblob(32), 0)`,
		`UPDATE audit_keys SET idx = 1 WHERE key = 'jti:e-0'`,
		`DELETE FROM audit_keys`,
		`UPDATE audit_checkpoints SET note = x'00'`,
		`DELETE FROM audit_checkpoints`,
	} {
		if _, err := db.Exec(q); err == nil {
			t.Errorf("%s succeeded", q)
		}
	}
	if data, err := st.AuditEntries(context.Background(), 0, 2); err != nil || len(data) != 2 {
		t.Fatalf("entries after the attempts = %q, %v", data, err)
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

func TestAuditStorage(t *testing.T) {
	st, _ := openStore(t)
	ctx := context.Background()
	es := appendEntries(t, st, "e", 2)
	var log storage = AuditStorage(st)
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
	if err := log.PutCheckpoint(ctx, 1, []byte("note 1")); err != nil {
		t.Fatal(err)
	}
	lister, ok := log.(interface {
		Checkpoints(ctx context.Context) ([][]byte, error)
	})
	if !ok {
		t.Fatal("AuditLog is not a CheckpointLister")
	}
	if notes, err := lister.Checkpoints(ctx); err != nil || !reflect.DeepEqual(notes, [][]byte{[]byte("note 1"), []byte("note 2")}) {
		t.Fatalf("Checkpoints = %q, %v", notes, err)
	}
	// On a Tx, the log includes the transaction's own appends.
	err := st.Tx(ctx, func(tx Tx) error {
		if _, err := tx.AppendAudit(ctx, testEntry("in tx")); err != nil {
			return err
		}
		n, err := AuditStorage(tx).Size(ctx)
		if err == nil && n != 3 {
			err = fmt.Errorf("Size in the Tx = %d, want 3", n)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestAuditAppendConcurrent: 64 goroutines, each appending one entry in a
// Tx of its own, get the indices 0…63, one each, and each index holds its
// caller's entry.
func TestAuditAppendConcurrent(t *testing.T) {
	st, _ := openStore(t)
	assertDenseAppends(t, []Store{st}, 64, 1)
}

// TestAuditAppendReplicas: two Stores on one file, as two processes would
// be, still number the log densely: the index is assigned inside the write
// transaction.
func TestAuditAppendReplicas(t *testing.T) {
	st1, path := openStore(t)
	st2 := openPath(t, path)
	assertDenseAppends(t, []Store{st1, st2}, 64, 5)
}

// assertDenseAppends appends from goroutines × perG Tx calls spread over
// stores, and checks every caller got its own index and the log is dense.
func assertDenseAppends(t *testing.T, stores []Store, goroutines, perG int) {
	t.Helper()
	ctx := context.Background()
	got := make([][]uint64, goroutines)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for g := range goroutines {
		st := stores[g%len(stores)]
		wg.Go(func() {
			<-start
			for i := range perG {
				name := fmt.Sprintf("g%d-%d", g, i)
				var idx uint64
				err := st.Tx(ctx, func(tx Tx) (err error) {
					idx, err = tx.AppendAudit(ctx, testEntry(name, "jti:"+name))
					return err
				})
				if err != nil {
					t.Errorf("%s: %v", name, err)
					return
				}
				got[g] = append(got[g], idx)
			}
		})
	}
	close(start)
	wg.Wait()
	total := goroutines * perG
	if n, err := stores[0].AuditSize(ctx); err != nil || n != uint64(total) {
		t.Fatalf("AuditSize = %d, %v; want %d", n, err, total)
	}
	seen := map[uint64]string{}
	for g := range goroutines {
		for i, idx := range got[g] {
			name := fmt.Sprintf("g%d-%d", g, i)
			if other, dup := seen[idx]; dup {
				t.Fatalf("index %d given to %s and %s", idx, other, name)
			}
			seen[idx] = name
			data, err := stores[0].AuditEntries(ctx, idx, idx+1)
			if err != nil || !bytes.Equal(data[0], testEntry(name).Data) {
				t.Errorf("entry %d = %q, %v; want %s's", idx, data, err, name)
			}
			if k, err := stores[0].AuditIndex(ctx, "jti:"+name); err != nil || k != idx {
				t.Errorf("AuditIndex(jti:%s) = %d, %v; want %d", name, k, err, idx)
			}
		}
	}
	if len(seen) != total {
		t.Fatalf("%d indices given out, want %d", len(seen), total)
	}
}
