package sqlite

import (
	"context"
	"errors"
	"testing"

	"github.com/sigil-dev/sigil/internal/store"
)

// TestWriterStatementsPrepared: a write runs unprepared the first time,
// is prepared on the writer connection before the next transaction, and
// through its prepared statement commits, rolls back with its
// transaction, and reports a duplicate key as before.
func TestWriterStatementsPrepared(t *testing.T) {
	st, _ := openStore(t)
	stmts := st.(*sqliteStore).gc.stmts
	ctx := context.Background()
	d := testDevice("d1")
	create := func(id string) error { return st.CreateChallenge(ctx, testChallenge(id, d)) }
	prepared := func() int {
		stmts.mu.Lock()
		defer stmts.mu.Unlock()
		n := 0
		for _, s := range stmts.m {
			if s != nil {
				n++
			}
		}
		return n
	}

	if err := create("c1"); err != nil {
		t.Fatal(err)
	}
	if n := prepared(); n != 0 || len(stmts.queued) != 1 {
		t.Fatalf("after the first write: %d statements prepared, %d queued; want 0 and 1", n, len(stmts.queued))
	}
	if err := create("c2"); err != nil {
		t.Fatal(err)
	}
	if n := prepared(); n != 1 || len(stmts.queued) != 0 {
		t.Fatalf("after the second write: %d statements prepared, %d queued; want 1 and 0", n, len(stmts.queued))
	}
	errFail := errors.New("fail")
	err := st.Tx(ctx, func(tx store.Tx) error {
		if err := tx.CreateChallenge(ctx, testChallenge("c3", d)); err != nil {
			return err
		}
		return errFail
	})
	if !errors.Is(err, errFail) {
		t.Fatalf("Tx = %v, want %v", err, errFail)
	}
	if err := create("c1"); !errors.Is(err, store.ErrConflict) {
		t.Errorf("duplicate challenge: %v, want ErrConflict", err)
	}
	for id, want := range map[string]error{"c1": nil, "c2": nil, "c3": store.ErrNotFound} {
		if _, err := st.Challenge(ctx, id); !errors.Is(err, want) {
			t.Errorf("challenge %s: %v, want %v", id, err, want)
		}
	}
}
