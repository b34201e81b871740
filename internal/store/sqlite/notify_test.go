package sqlite

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/internal/store/storetest"
)

// TestNotifyOncePerBatchAfterCommit: a group commit batch in which fns
// revoke notifies once, after its COMMIT (the committed head is readable
// through the read pool when the notifier is kicked); a revoking fn that
// fails is rolled back to its savepoint and counts for nothing, and a batch
// whose only revoking fns failed notifies no one.
func TestNotifyOncePerBatchAfterCommit(t *testing.T) {
	st, _ := openStore(t)
	ctx := context.Background()
	var tokens []store.Token
	for i := range 8 {
		tokens = append(tokens, storetest.Token(fmt.Sprint("t", i), ""))
	}
	storetest.InsertTokens(t, st, tokens...)
	s := st.(*sqliteStore)
	var heads []uint64
	s.gc.revoked = func() { // on the committer's goroutine, after COMMIT
		head, err := st.LatestRevocationSeq(ctx)
		if err != nil {
			t.Error(err)
		}
		heads = append(heads, head)
	}
	errUndo := errors.New("undo")
	revoke := func(jti string, fail bool) func(store.Tx) error {
		return func(tx store.Tx) error {
			if _, err := tx.RevokeToken(ctx, jti, "logout", storetest.T0); err != nil {
				return err
			}
			if fail {
				return errUndo
			}
			return nil
		}
	}
	batch := func(fns ...func(store.Tx) error) {
		t.Helper()
		release := holdCommitter(t, st)
		q := &txQueue{t: t, st: st}
		var results []chan error
		for _, fn := range fns {
			results = append(results, q.add(ctx, fn))
		}
		release()
		for _, ch := range results {
			if err := <-ch; err != nil && !errors.Is(err, errUndo) {
				t.Fatal(err)
			}
		}
	}
	none := func(store.Tx) error { return nil }
	batch(revoke("t0", true), revoke("t1", false), none, revoke("t2", false), revoke("t3", false))
	if len(heads) != 1 || heads[0] != 3 {
		t.Fatalf("a batch of 3 committed revocations notified at heads %v, want once at 3", heads)
	}
	batch(revoke("t4", true), none, revoke("t5", true))
	if len(heads) != 1 {
		t.Fatalf("a batch whose revocations were rolled back notified at heads %v", heads[1:])
	}
	if err := st.Tx(ctx, revoke("t6", false)); err != nil { // alone
		t.Fatal(err)
	}
	if err := st.Tx(ctx, revoke("t7", true)); !errors.Is(err, errUndo) {
		t.Fatalf("Tx = %v, want the undo", err)
	}
	if len(heads) != 2 || heads[1] != 4 {
		t.Fatalf("a Tx alone notified at heads %v, want once more at 4", heads)
	}
}
