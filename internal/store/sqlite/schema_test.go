package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/internal/store"
)

// The schema's own guards, below the Go checks, and its migrations.

// TestTokensImmutable: the schema itself refuses to change what a token
// record says, but for its revocation, and to rewrite revocation events.
func TestTokensImmutable(t *testing.T) {
	st, path := openStore(t)
	insertTokens(t, st, testToken("A", ""), testToken("B", "A"), testToken("C", "B"), testToken("D", "A"), testToken("E", ""))
	if _, err := st.RevokeToken(context.Background(), "B", "compromised", t0); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open(driverName, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, tc := range []struct{ name, sql, want string }{
		{"expiry", `UPDATE tokens SET expires_at = expires_at + 1 WHERE jti = 'C'`, "immutable"},
		{"parent", `UPDATE tokens SET parent_jti = 'E' WHERE jti = 'C'`, "immutable"},
		{"jti", `UPDATE tokens SET jti = 'Z' WHERE jti = 'E'`, "immutable"},
		{"event", `UPDATE token_revocations SET reason = 'other'`, "append-only"},
		{"sequence reset", `UPDATE token_revocation_seq SET seq = -1`, "CHECK constraint failed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := db.Exec(tc.sql); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("%s: %v, want an error saying %q", tc.sql, err, tc.want)
			}
		})
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
	db, err := sql.Open(driverName, path)
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

// TestMigrateExternalTokens: migration 0005 rebuilds the tokens table of a
// database at version 4 keeping every token, revocation and event, and the
// triggers, keys and indexes, and its constraints hold external tokens to
// their namespace below the Go checks.
func TestMigrateExternalTokens(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sigil.db")
	db, err := openSQLitePool(ctx, path+"?_txlock=immediate&_pragma=foreign_keys(1)&_pragma=journal_mode(WAL)", 1)
	if err != nil {
		t.Fatal(err)
	}
	ms, err := store.LoadMigrations(sqliteMigrations, "migrations")
	if err != nil || len(ms) < 5 || ms[4].Name != "external_tokens" {
		t.Fatalf("loadMigrations = %d, %v; want 0005_external_tokens", len(ms), err)
	}
	if err := migrate(ctx, db, ms[:4]); err != nil {
		t.Fatal(err)
	}
	w := writer{sqlQuerier{db}}
	before := []store.Token{testToken("A", ""), testToken("B", "A"), testToken("C", "B"), opaqueToken("D", "A"), testToken("E", "")}
	for i := range before {
		before[i].CNF = "" // bound to no certificate: binding needs migration 0008
	}
	for _, tok := range before {
		if err := w.InsertToken(ctx, tok); err != nil {
			t.Fatal(err)
		}
	}
	for _, jti := range []string{"E", "B"} {
		if _, err := w.RevokeToken(ctx, jti, "compromised", t0); err != nil {
			t.Fatal(err)
		}
	}
	r := reader{sqlQuerier{db}}
	var wantEvents []store.RevocationEvent // read back by today's code, which needs migration 0008
	for i, jti := range []string{"E", "B", "C"} {
		wantEvents = append(wantEvents, store.RevocationEvent{Seq: uint64(i + 1), JTI: jti, RevokedAt: t0, Reason: "compromised"})
	}
	var wantTokens []store.Token
	for _, tok := range before {
		rec, _ := r.Token(ctx, tok.JTI)
		wantTokens = append(wantTokens, rec)
	}
	db.Close()

	st := openPath(t, path)
	for _, want := range wantTokens {
		if got, err := st.Token(ctx, want.JTI); err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("Token(%s) after migration = %+v, %v\nwant %+v", want.JTI, got, err, want)
		}
	}
	if got, err := st.RevocationEvents(ctx, 0, 0); err != nil || len(wantEvents) != 3 || !reflect.DeepEqual(got, wantEvents) {
		t.Errorf("RevocationEvents after migration = %+v, %v\nwant %+v", got, err, wantEvents)
	}
	if seq, err := st.LatestRevocationSeq(ctx); err != nil || seq != 3 {
		t.Errorf("LatestRevocationSeq = %d, %v; want 3", seq, err)
	}
	if got, err := st.TokenByHandle(ctx, handleHash("D")); err != nil || got.JTI != "D" {
		t.Errorf("TokenByHandle after migration = %+v, %v", got, err)
	}
	if err := st.InsertToken(ctx, testToken("F", "nope")); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("InsertToken under an unknown parent = %v, want ErrNotFound", err)
	}
	if err := st.InsertExternalToken(ctx, externalToken("ext:alice")); err != nil {
		t.Errorf("InsertExternalToken = %v", err)
	}

	// Below the Go checks: the schema itself.
	raw := writer{sqlQuerier{st.(*sqliteStore).w}}
	for _, tc := range []struct{ name, sql, text string }{
		{"immutable tokens", `UPDATE tokens SET sub = 'x' WHERE jti = 'A'`, "immutable"},
		{"append-only events", `UPDATE token_revocations SET reason = 'x'`, "append-only"},
		{"ours in the external namespace", insertSQL("'ext:x'", "'jwt'", "''", "''"), "CHECK"},
		{"external outside the namespace", insertSQL("'x'", "'external'", "''", "''"), "CHECK"},
		{"external with a client", insertSQL("'ext:x'", "'external'", "'spiffe://sigil.test/a'", "''"), "CHECK"},
		{"external with a cnf", insertSQL("'ext:x'", "'external'", "''", "'x5t'"), "CHECK"},
		{"unknown kind", insertSQL("'x'", "'refresh'", "''", "''"), "CHECK"},
	} {
		if _, err := raw.q.ExecContext(ctx, tc.sql); err == nil || !strings.Contains(err.Error(), tc.text) {
			t.Errorf("%s: %v, want an error saying %q", tc.name, err, tc.text)
		}
	}
	// Purging still takes the events with the tokens (ON DELETE CASCADE).
	if n, err := st.PurgeExpiredTokens(ctx, t0.Add(2*time.Hour)); err != nil || n != 6 {
		t.Fatalf("PurgeExpiredTokens = %d, %v; want 6", n, err)
	}
	if got, err := st.RevocationEvents(ctx, 0, 0); err != nil || len(got) != 0 {
		t.Fatalf("events after purging = %+v, %v; want none", got, err)
	}
}

// insertSQL inserts a token with the given SQL literals.
func insertSQL(jti, kind, clientID, cnf string) string {
	return `INSERT INTO tokens (jti, sub, client_id, scope, issued_at, expires_at, cnf, kind, kid)
		VALUES (` + jti + `, 'alice', ` + clientID + `, '', 1, 2, ` + cnf + `, ` + kind + `, '')`
}

// BenchmarkExternalTokenTx is BenchmarkTokenTx for an exchange of a user
// IdP token: the Tx also inserts the user token's record, which is stored
// already but for the first (compare with BenchmarkTokenTx).
func BenchmarkExternalTokenTx(b *testing.B) {
	for _, goroutines := range []int{1, 64} {
		b.Run(fmt.Sprintf("goroutines=%d", goroutines), func(b *testing.B) {
			ctx := context.Background()
			st := openPath(b, filepath.Join(b.TempDir(), "sigil.db"))
			ext := externalToken("ext:alice")
			driveTx(b, goroutines, func(i int64) error {
				tok := testToken(fmt.Sprintf("bench-%d", i), ext.JTI)
				return st.Tx(ctx, func(tx store.Tx) error {
					if err := tx.InsertExternalToken(ctx, ext); err != nil {
						return err
					}
					if err := tx.InsertToken(ctx, tok); err != nil {
						return err
					}
					_, err := tx.AppendAudit(ctx, testEntry(tok.JTI, "jti:"+tok.JTI))
					return err
				})
			})
		})
	}
}

// TestMigrateAuditHead: migration 0007 starts the coordinator row at the
// size of a log written before it; appends go on from there; and the
// schema refuses to move the head other than by one, or to insert an
// entry anywhere but at it.
func TestMigrateAuditHead(t *testing.T) {
	ctx := context.Background()
	path, _ := legacyAuditLog(t, 5)
	st := openPath(t, path)
	if n, err := st.AuditSize(ctx); err != nil || n != 5 {
		t.Fatalf("AuditSize after migrating = %d, %v; want 5", n, err)
	}
	if idx, err := st.AppendAudit(ctx, testEntry("after", "jti:after")); err != nil || idx != 5 {
		t.Fatalf("AppendAudit after migrating = %d, %v; want 5", idx, err)
	}
	db, err := sql.Open(driverName, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, tc := range []struct{ name, sql, want string }{
		{"shrink", `UPDATE audit_head SET size = 3`, "one entry at a time"},
		{"skip", `UPDATE audit_head SET size = 8`, "one entry at a time"},
		{"delete", `DELETE FROM audit_head`, "never deleted"},
		{"second row", `INSERT INTO audit_head (id, size) VALUES (2, 0)`, "CHECK constraint failed"},
		{"shard start off the head", `UPDATE audit_head SET shard_start = 2`, "a shard starts at the head"},
		{"shard start with an entry", `UPDATE audit_head SET shard_start = size, size = size + 1`, "one entry at a time"},
		{"shard row off the head", `INSERT INTO audit_shards VALUES (3, 'x', 'o/x', 0)`, "starts at the head"},
		{"delete an entry", `DELETE FROM audit_keys WHERE idx = 0; DELETE FROM audit_entries WHERE idx = 0`, "append-only"},
		{"delete a key", `DELETE FROM audit_keys`, "append-only"},
		{"archive the open log", `INSERT INTO audit_archived VALUES (0, 6, 0)`, "only a sealed audit shard"},
		{"entry past the head", `INSERT INTO audit_entries VALUES (7, x'00', zeroblob(32), 0)`, "appended at the head"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := db.Exec(tc.sql); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("%s: %v, want an error saying %q", tc.sql, err, tc.want)
			}
		})
	}
	if n, err := st.AuditSize(ctx); err != nil || n != 6 {
		t.Fatalf("AuditSize = %d, %v; want 6", n, err)
	}
}

// TestIdentityHoldersPlan: IdentityHolders seeks through the index
// certificates_holders and never scans certificates, so that a device
// renewing many times does not make every renewal read all its
// certificates.
func TestIdentityHoldersPlan(t *testing.T) {
	_, path := openStore(t)
	plan := queryPlan(t, path, identityHolders, "spiffe://sigil.test/workload/a", 0)
	text := strings.Join(plan, "\n")
	// The live certificate's seek may use either index on (identity,
	// device, not_after): certificates_holders or certificates_identities.
	if !strings.Contains(text, "certificates_holders (spiffe_id=? AND ek_hash=? AND not_after>?)") &&
		!strings.Contains(text, "certificates_identities (ek_hash=? AND spiffe_id=? AND not_after>?)") {
		t.Errorf("plan does not seek one device's live certificate by identity, device and not_after:\n%s", text)
	}
	for _, p := range plan {
		if strings.HasPrefix(p, "SCAN") && strings.Contains(p, "certificates") || strings.Contains(p, "SCAN c ") {
			t.Errorf("plan scans certificates: %q\n%s", p, text)
		}
	}
}

// TestDeviceIdentitiesPlan: DeviceIdentities skips through the index
// certificates_identities one identity at a time and never scans a
// device's certificates, so that a device renewing many times does not
// make every renewal read all its certificates.
func TestDeviceIdentitiesPlan(t *testing.T) {
	_, path := openStore(t)
	plan := queryPlan(t, path, deviceIdentities, "ek", 0)
	text := strings.Join(plan, "\n")
	if !strings.Contains(text, "certificates_identities (ek_hash=? AND spiffe_id=? AND not_after>?)") {
		t.Errorf("plan does not seek one identity's live certificate in certificates_identities:\n%s", text)
	}
	for _, p := range plan {
		if strings.HasPrefix(p, "SCAN") && strings.Contains(p, "certificates") || strings.Contains(p, "SCAN c ") ||
			strings.Contains(p, "certificates_ek_hash") || strings.Contains(p, "certificates_current") {
			t.Errorf("plan scans certificates: %q\n%s", p, text)
		}
	}
}

// TestCurrentDeviceCertificatesPlan: a device's live certificates are read
// by certificates_current, seeking on the device and not_after, with the
// parameters written +?N (planStable).
func TestCurrentDeviceCertificatesPlan(t *testing.T) {
	_, path := openStore(t)
	plan := queryPlan(t, path, currentDeviceCertificates, "ek", 0)
	text := strings.Join(plan, "\n")
	if !strings.Contains(text, "certificates_current (ek_hash=? AND not_after>?)") {
		t.Errorf("plan does not seek the device's live certificates in certificates_current:\n%s", text)
	}
}

// TestDeviceCertificatesPlan: a device's certificates are read in order
// from certificates_ek_hash, with no sort, parameters written +?N.
func TestDeviceCertificatesPlan(t *testing.T) {
	_, path := openStore(t)
	plan := queryPlan(t, path, deviceCertificates, "ek")
	text := strings.Join(plan, "\n")
	if !strings.Contains(text, "certificates_ek_hash (ek_hash=?)") {
		t.Errorf("plan does not seek the device's certificates in certificates_ek_hash:\n%s", text)
	}
}

// queryPlan is SQLite's plan for query, one line per step.
func queryPlan(t *testing.T, path, query string, args ...any) []string {
	t.Helper()
	db, err := sql.Open(driverName, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`EXPLAIN QUERY PLAN `+query, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return plan
}

// TestThumbprintPlans: the statements that find certificates and tokens by
// thumbprint, on every exchange (InsertToken's hold) and every certificate
// revocation, seek the partial indexes certificates_thumbprint and
// tokens_cnf instead of scanning their tables.
func TestThumbprintPlans(t *testing.T) {
	_, path := openStore(t)
	for _, q := range []struct {
		name, query, index string
		args               []any
	}{
		{"CertificateByThumbprint", certificateByThumbprint, "certificates_thumbprint", []any{"x5t"}},
		{"InsertToken's hold of the certificate", holdCertificateQuery, "certificates_thumbprint", []any{"x5t"}},
		{"revoke tokens by cnf", revokeTokensWhere(inCond("cnf", 2)), "tokens_cnf", []any{1, "r", "a", "b"}},
	} {
		t.Run(q.name, func(t *testing.T) {
			plan := queryPlan(t, path, q.query, q.args...)
			text := strings.Join(plan, "\n")
			if !strings.Contains(text, q.index) {
				t.Errorf("plan does not use %s:\n%s", q.index, text)
			}
			for _, p := range plan {
				if strings.HasPrefix(p, "SCAN") && p != "SCAN CONSTANT ROW" {
					t.Errorf("plan scans: %q\n%s", p, text)
				}
			}
		})
	}
}
