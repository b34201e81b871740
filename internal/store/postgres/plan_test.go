package postgres

import (
	"context"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/sigil-dev/sigil/testenv"
)

// renewalHistory is the certificates one device renewed for one identity
// in the plan tests: enough that reading them all shows in the plan.
const renewalHistory = 2000

// otherDevices hold other identities (renewed 4 times each), before the
// holders in ek_hash order.
const otherDevices = 500

// TestDeviceIdentitiesPlan: DeviceIdentities reads one entry per identity
// of the device, not every certificate it renewed, and never scans the
// table (PostgreSQL has no skip scan; DISTINCT over an index reads every
// live certificate of the device).
func TestDeviceIdentitiesPlan(t *testing.T) {
	t.Parallel()
	conn := historyDB(t)
	got := planRows(t, conn, deviceIdentities, "ek-a", micros(time.Now()))
	if want := []string{"spiffe://sigil.test/workload/a", "spiffe://sigil.test/workload/b"}; !slices.Equal(got.result, want) {
		t.Fatalf("identities %q, want %q", got.result, want)
	}
	got.check(t, "certificates_identities")
}

// TestIdentityHoldersPlan: IdentityHolders reads one entry per device that
// held the identity, not every certificate they renewed, and leaves out
// disabled devices and devices whose certificates expired.
func TestIdentityHoldersPlan(t *testing.T) {
	t.Parallel()
	conn := historyDB(t)
	got := planRows(t, conn, identityHolders, "spiffe://sigil.test/workload/a", micros(time.Now()))
	if want := []string{"ek-a", "ek-b"}; !slices.Equal(got.result, want) {
		t.Fatalf("holders %q, want %q", got.result, want)
	}
	got.check(t, "certificates_holders")
}

// historyDB is a migrated database where device ek-a renewed identity a
// renewalHistory times (all still valid) and holds b once, ek-b holds a
// once, ek-c (disabled) holds a, and ek-d held a until it expired.
func historyDB(t *testing.T) *pgx.Conn {
	t.Helper()
	dsn := testenv.PostgresDB(t)
	st, err := Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	now := micros(time.Now())
	day := int64(24 * time.Hour / time.Microsecond)
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{`INSERT INTO evidence (digest, ek_hash, kind, bundle, created_at) VALUES ('d', 'ek-a', 'enroll', '\x01', 0)`, nil},
		{`INSERT INTO devices (ek_hash, ek_public_der, ak_hash, ak_public, status, created_at, updated_at)
			SELECT e, '\x01', 'ak-' || e, '\x01', CASE WHEN e = 'ek-c' THEN 'disabled' ELSE 'active' END, 0, 0
			FROM unnest(ARRAY['ek-a', 'ek-b', 'ek-c', 'ek-d']) AS e`, nil},
		{`INSERT INTO devices (ek_hash, ek_public_der, ak_hash, ak_public, status, created_at, updated_at)
			SELECT 'ek-' || i, '\x01', 'ak-' || i, '\x01', 'active', 0, 0 FROM generate_series(1, $1::int) AS i`, []any{otherDevices}},
		{`INSERT INTO certificates (serial, spiffe_id, ek_hash, not_before, not_after, evidence_digest, policy_version, der)
			SELECT 'o' || i || '-' || j, 'spiffe://sigil.test/workload/other-' || i, 'ek-' || i, $1::bigint + j, $1::bigint + $2::bigint + j, 'd', 'p', '\x01'
			FROM generate_series(1, $3::int) AS i, generate_series(1, 4) AS j`, []any{now, day, otherDevices}},
		{`INSERT INTO certificates (serial, spiffe_id, ek_hash, not_before, not_after, evidence_digest, policy_version, der)
			SELECT 'a' || i, 'spiffe://sigil.test/workload/a', 'ek-a', $1::bigint + i, $1::bigint + $2::bigint + i, 'd', 'p', '\x01'
			FROM generate_series(1, $3::int) AS i`, []any{now, day, renewalHistory}},
		{`INSERT INTO certificates (serial, spiffe_id, ek_hash, not_before, not_after, evidence_digest, policy_version, der) VALUES
			('b1', 'spiffe://sigil.test/workload/b', 'ek-a', $1::bigint, $1::bigint + $2::bigint, 'd', 'p', '\x01'),
			('a-b', 'spiffe://sigil.test/workload/a', 'ek-b', $1::bigint, $1::bigint + $2::bigint, 'd', 'p', '\x01'),
			('a-c', 'spiffe://sigil.test/workload/a', 'ek-c', $1::bigint, $1::bigint + $2::bigint, 'd', 'p', '\x01'),
			('a-d', 'spiffe://sigil.test/workload/a', 'ek-d', $1::bigint - 2 * $2::bigint, $1::bigint - $2::bigint, 'd', 'p', '\x01')`,
			[]any{now, day}},
		{`ANALYZE certificates`, nil},
		{`ANALYZE devices`, nil},
	} {
		if _, err := conn.Exec(context.Background(), q.sql, q.args...); err != nil {
			t.Fatalf("%s: %v", q.sql, err)
		}
	}
	return conn
}

// plan is a query's result and its EXPLAIN ANALYZE lines.
type plan struct {
	result []string
	lines  []string
}

func planRows(t *testing.T, conn *pgx.Conn, query string, args ...any) plan {
	t.Helper()
	var p plan
	rows, err := conn.Query(context.Background(), query, args...)
	if err != nil {
		t.Fatal(err)
	}
	if p.result, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
		t.Fatal(err)
	}
	rows, err = conn.Query(context.Background(), "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) "+query, args...)
	if err != nil {
		t.Fatal(err)
	}
	if p.lines, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
		t.Fatal(err)
	}
	return p
}

var (
	actualRows  = regexp.MustCompile(`actual rows=(\d+)`)
	removedRows = regexp.MustCompile(`Rows Removed by Filter: (\d+)`)
)

// check fails if the plan scans certificates without an index, does not
// use index, or reads more than a few certificate entries in one step.
func (p plan) check(t *testing.T, index string) {
	t.Helper()
	text := strings.Join(p.lines, "\n")
	if !strings.Contains(text, "using "+index+" on certificates") {
		t.Errorf("plan does not use %s:\n%s", index, text)
	}
	for _, l := range p.lines {
		if strings.Contains(l, "Seq Scan on certificates") || strings.Contains(l, "Bitmap Heap Scan on certificates") {
			t.Errorf("plan scans certificates: %q\n%s", strings.TrimSpace(l), text)
		}
		if !strings.Contains(l, "on certificates") {
			continue
		}
		m := actualRows.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		if n, _ := strconv.Atoi(m[1]); n > 10 {
			t.Errorf("one step reads %d certificate entries of a history of %d: %q\n%s", n, renewalHistory, strings.TrimSpace(l), text)
		}
	}
	for _, m := range removedRows.FindAllStringSubmatch(text, -1) {
		if n, _ := strconv.Atoi(m[1]); n > 10 {
			t.Errorf("a step reads and drops %d rows:\n%s", n, text)
		}
	}
}
