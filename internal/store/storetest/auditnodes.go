package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/sigil-dev/sigil/audit"
	"github.com/sigil-dev/sigil/internal/store"
)

// CheckAuditNodes checks that st stores exactly the complete nodes of the
// tree of leaves, each the root of its leaves as the audit package computes
// it from them.
func CheckAuditNodes(t testing.TB, st store.Store, leaves [][]byte) {
	t.Helper()
	ctx := context.Background()
	for level := uint(store.AuditTileHeight); level <= 16; level += store.AuditTileHeight {
		n := uint64(len(leaves)) >> level
		got, err := st.AuditNodeHashes(ctx, level, 0, n)
		if err != nil {
			t.Fatalf("AuditNodeHashes(%d, 0, %d): %v", level, n, err)
		}
		for i := range n {
			sub := LeafHashes(leaves[i<<level : (i+1)<<level])
			want, err := audit.RootHash(ctx, sub, uint64(len(sub)))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got[i], want) {
				t.Fatalf("node %d at level %d = %x, want %x", i, level, got[i], want)
			}
		}
		if _, err := st.AuditNodeHashes(ctx, level, n, n+1); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("AuditNodeHashes(%d, %d, %d) of an incomplete node = %v, want ErrNotFound", level, n, n+1, err)
		}
	}
}

// testAuditNodesCommitWithEntries: AppendAudit stores the nodes an entry
// completes in the entry's transaction, and a rolled-back transaction
// leaves none.
func testAuditNodesCommitWithEntries(t *testing.T, h *harness) {
	st := h.fresh(t)
	ctx := context.Background()
	appendInTx := func(prefix string, n int, fail error) ([]store.AuditEntry, error) {
		var es []store.AuditEntry
		err := st.Tx(ctx, func(tx store.Tx) error {
			for i := range n {
				e := Entry(fmt.Sprintf("%s-%d", prefix, i))
				if _, err := tx.AppendAudit(ctx, e); err != nil {
					return err
				}
				es = append(es, e)
			}
			return fail
		})
		return es, err
	}
	es, err := appendInTx("a", 2*256+3, nil)
	if err != nil {
		t.Fatal(err)
	}
	CheckAuditNodes(t, st, LeafHashesOf(es))

	errUndo := errors.New("undo")
	if _, err := appendInTx("undone", 300, errUndo); !errors.Is(err, errUndo) {
		t.Fatalf("Tx = %v, want %v", err, errUndo)
	}
	if n, err := st.AuditSize(ctx); err != nil || n != 2*256+3 {
		t.Fatalf("AuditSize after a rolled-back Tx = %d, %v", n, err)
	}
	CheckAuditNodes(t, st, LeafHashesOf(es)) // no node 2 at level 8

	more := AppendEntries(t, st, "b", 256)
	CheckAuditNodes(t, st, LeafHashesOf(append(es, more...)))
}

func testAuditNodeHashesLevels(t *testing.T, h *harness) {
	st := h.fresh(t)
	AppendEntries(t, st, "e", 256)
	for _, level := range []uint{0, 4, 9, 64} {
		_, err := st.AuditNodeHashes(context.Background(), level, 0, 0)
		if err == nil || !strings.Contains(err.Error(), "want a positive multiple of 8 below 64") {
			t.Errorf("AuditNodeHashes at level %d = %v", level, err)
		}
	}
	if got, err := st.AuditNodeHashes(context.Background(), 8, 0, 1); err != nil || len(got) != 1 {
		t.Fatalf("AuditNodeHashes(8, 0, 1) = %x, %v", got, err)
	}
}
