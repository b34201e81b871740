package postgres

import (
	"bytes"
	"context"
	"crypto/rand"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/sigil-dev/sigil/audit"
	"github.com/sigil-dev/sigil/testenv"
)

// TestSubtreeHashSQL: sigil_subtree_hash, which sigil_record_token stores
// the audit tree's nodes with, is the audit package's SubtreeHash, for
// every size of perfect tree up to a tile's; a node with a child missing
// is an error, never a hash.
func TestSubtreeHashSQL(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := migratedConn(t)
	for n := 1; n <= 256; n *= 2 {
		hashes := make([][]byte, n)
		for i := range hashes {
			hashes[i] = make([]byte, 32)
			rand.Read(hashes[i])
		}
		want, err := audit.SubtreeHash(hashes)
		if err != nil {
			t.Fatal(err)
		}
		var got []byte
		if err := c.QueryRow(ctx, `SELECT sigil_subtree_hash($1, $2)`, hashes, n).Scan(&got); err != nil {
			t.Fatalf("%d hashes: %v", n, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%d hashes: sigil_subtree_hash = %x, SubtreeHash = %x", n, got, want)
		}
	}
	var got []byte
	err := c.QueryRow(ctx, `SELECT sigil_subtree_hash($1, 4)`, [][]byte{make([]byte, 32), make([]byte, 32)}).Scan(&got)
	if err == nil || !strings.Contains(err.Error(), "2 children stored, want 4") {
		t.Fatalf("a node of 2 children out of 4 = %x, %v; want an error", got, err)
	}
}

// TestThumbprintLookupsUseIndex: the statements that find a certificate
// by thumbprint use the partial index on it in their generic plans (those
// PostgreSQL keeps for a prepared statement after five runs), not a scan
// of every certificate: sequential scans off, a plan that cannot use the
// index still scans.
func TestThumbprintLookupsUseIndex(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := migratedConn(t)
	for _, q := range []string{`SET plan_cache_mode = force_generic_plan`, `SET enable_seqscan = off`} {
		if _, err := c.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	for name, q := range map[string]string{"holdCertificate": holdCertificate, "CertificateByThumbprint": certificateByThumbprint} {
		if _, err := c.Exec(ctx, `PREPARE `+name+`(text) AS `+q); err != nil {
			t.Fatal(err)
		}
		rows, err := c.Query(ctx, `EXPLAIN EXECUTE `+name+`('x')`)
		if err != nil {
			t.Fatal(err)
		}
		plan, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		if p := strings.Join(plan, "\n"); !strings.Contains(p, "certificates_thumbprint") {
			t.Errorf("%s's generic plan does not use the thumbprint index:\n%s", name, p)
		}
	}
}

// migratedConn is a connection of its own to a new, migrated database,
// closed when t ends.
func migratedConn(t *testing.T) *pgx.Conn {
	t.Helper()
	ctx := context.Background()
	dsn := testenv.PostgresDB(t)
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	err = migrate(ctx, pool)
	pool.Close()
	if err != nil {
		t.Fatal(err)
	}
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(ctx) })
	return c
}
