package sqlite

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sigil-dev/sigil/audit"

	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/internal/store/storetest"
)

// legacyAuditLog makes a database with the schema before 0006_audit_nodes
// and n audit entries, as a build without audit nodes left it, and
// returns its path and the leaf hashes.
func legacyAuditLog(t testing.TB, n int) (string, [][]byte) {
	t.Helper()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sigil.db")
	w, err := openSQLitePool(ctx, path+"?_txlock=immediate&_pragma=foreign_keys(1)&_pragma=journal_mode(WAL)", 1)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	ms, err := store.LoadMigrations(sqliteMigrations, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range ms {
		if m.Name == "audit_nodes" {
			ms = ms[:i]
		}
	}
	if err := migrate(ctx, w, ms); err != nil {
		t.Fatal(err)
	}
	tx, err := w.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	hashes := make([][]byte, n)
	const rows = 500 // per INSERT: one statement a row is slow under -race
	for first := 0; first < n; first += rows {
		var args []any
		for i := first; i < min(first+rows, n); i++ {
			e := testEntry(fmt.Sprintf("legacy-%d", i))
			hashes[i] = e.LeafHash
			args = append(args, i, e.Data, e.LeafHash)
		}
		values := strings.Repeat(", (?, ?, ?, 0)", len(args)/3)[2:]
		if _, err := tx.Exec(`INSERT INTO audit_entries (idx, data, leaf_hash, created_at) VALUES `+values, args...); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	return path, hashes
}

// TestAuditNodesBackfill: opening a log written without nodes stores them
// all; appends go on from there; proofs from the nodes are those from the
// leaves; and the Log refuses a node edited in the file.
func TestAuditNodesBackfill(t *testing.T) {
	ctx := context.Background()
	path, leaves := legacyAuditLog(t, 3*256+5)
	st := openPath(t, path)
	storetest.CheckAuditNodes(t, st, leaves)
	es := appendEntries(t, st, "new", 256)
	leaves = append(leaves, storetest.LeafHashesOf(es)...)
	storetest.CheckAuditNodes(t, st, leaves)
	log := store.AuditStorage(st)
	checkProofsFromNodes(t, log, leaves, 0, 300, 767, 768, uint64(len(leaves)-1))

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := audit.NewSigner("sigil.test/audit", key)
	if err != nil {
		t.Fatal(err)
	}
	newLog := func() *audit.Log {
		l, err := audit.New(log, signer, signer.Name())
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	if err := newLog().Integrate(ctx); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open(driverName, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	forged := sha256.Sum256([]byte("forged"))
	if _, err := db.Exec(`DROP TRIGGER audit_nodes_no_update;
		UPDATE audit_nodes SET hash = ? WHERE level = 8 AND idx = 2`, forged[:]); err != nil {
		t.Fatal(err)
	}
	err = newLog().Init(ctx)
	if !errors.Is(err, audit.ErrTampered) || !strings.Contains(err.Error(), "node 2 at level 8") {
		t.Fatalf("Init over an edited node = %v, want ErrTampered for node 2 at level 8", err)
	}
}

// TestAuditNodesLevel16: the backfill and the 65536th append store the
// first node of level 16, computed from the nodes of level 8.
func TestAuditNodesLevel16(t *testing.T) {
	ctx := context.Background()
	path, leaves := legacyAuditLog(t, 1<<16-1)
	st := openPath(t, path)
	storetest.CheckAuditNodes(t, st, leaves)
	if _, err := st.AuditNodeHashes(ctx, 16, 0, 1); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("node 0 at level 16 before its last entry: %v, want ErrNotFound", err)
	}
	es := appendEntries(t, st, "new", 2)
	leaves = append(leaves, storetest.LeafHashesOf(es)...)
	storetest.CheckAuditNodes(t, st, leaves)
	checkProofsFromNodes(t, store.AuditStorage(st), leaves, 1<<16-1, 1<<16)
}

// checkProofsFromNodes wants the inclusion proofs of entries at, in the
// trees of sizes at+1 and all the leaves, from the nodes of log to be those
// recomputed from the leaves.
func checkProofsFromNodes(t *testing.T, log store.AuditLog, leaves [][]byte, at ...uint64) {
	t.Helper()
	ctx := context.Background()
	n := uint64(len(leaves))
	for _, i := range at {
		for _, size := range []uint64{i + 1, n} {
			p, err := audit.InclusionProof(ctx, log, i, size)
			if err != nil {
				t.Fatal(err)
			}
			want, err := audit.InclusionProof(ctx, storetest.LeafHashes(leaves), i, size)
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(p) != fmt.Sprint(want) {
				t.Fatalf("InclusionProof(%d, %d) from the store's nodes differs from the one from the leaves", i, size)
			}
		}
	}
}
