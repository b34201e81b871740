package postgres

import (
	"context"
	"fmt"
	"testing"
)

// TestAuditKeyCheckStaysIndexed: the taken-key check of AppendAudit and
// sigil_record_token reads audit_keys by index lookups even in a session
// that planned it while the table was a page. Planned then, SELECT … WHERE
// key = ANY (…) LIMIT 1 kept a sequential scan, and every entry appended
// read every key stored.
func TestAuditKeyCheckStaysIndexed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	conn := migratedConn(t)
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := conn.Exec(ctx, sql, args...); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	record := func(jti string) string {
		t.Helper()
		var outcome string
		err := conn.QueryRow(ctx, `SELECT sigil_record_token($1, NULL, 'sub', 'client', '[]', '[]', '', 1, 2, '', 'jwt',
			NULL, 'kid', '\x00', $2, 1, $3, $4, false)`, jti, make([]byte, 32), []string{"jti:" + jti}, int32(8)).Scan(&outcome)
		if err != nil {
			t.Fatal(err)
		}
		return outcome
	}
	taken := func(keys ...string) *string {
		t.Helper()
		var k *string
		if err := conn.QueryRow(ctx, `SELECT sigil_audit_key_taken($1)`, keys).Scan(&k); err != nil {
			t.Fatal(err)
		}
		return k
	}
	// Plan both while the table is a page: generic plans after five runs.
	for i := range 10 {
		record(fmt.Sprintf("small-%d", i))
		taken(fmt.Sprintf("jti:none-%d", i))
	}
	// Grow the log to 20,000 keys behind the guards' backs (this session
	// only: no triggers, no foreign keys), as appends would.
	exec(`SET session_replication_role = replica`)
	exec(`INSERT INTO audit_entries (idx, data, leaf_hash, created_at)
		SELECT i, '\x00', sha256(int8send(i)), 1 FROM generate_series(10, 20009) AS i`)
	exec(`INSERT INTO audit_keys (key, idx) SELECT 'jti:big-' || i, i FROM generate_series(10, 20009) AS i`)
	exec(`UPDATE audit_head SET size = 20010`)
	exec(`SET session_replication_role = origin`)

	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if got := record("late"); got != "ok 20010" {
		t.Errorf("sigil_record_token: %q, want ok 20010", got)
	}
	if got := record("late-2"); got != "ok 20011" {
		t.Errorf("sigil_record_token: %q, want ok 20011", got)
	}
	if got := taken("jti:none", "jti:big-777"); got == nil || *got != "jti:big-777" {
		t.Errorf("sigil_audit_key_taken: %v, want jti:big-777", got)
	}
	if got := taken("jti:none", "jti:other"); got != nil {
		t.Errorf("sigil_audit_key_taken: %q, want none", *got)
	}
	var seq, idx int64
	if err := conn.QueryRow(ctx, `SELECT seq_scan, idx_scan FROM pg_stat_xact_user_tables WHERE relname = 'audit_keys'`).Scan(&seq, &idx); err != nil {
		t.Fatal(err)
	}
	if seq != 0 {
		t.Errorf("audit_keys read by %d sequential scans (and %d index scans) in 4 key checks of a session that planned them on a small table", seq, idx)
	}
}
