package sqlite

import (
	"context"
	"database/sql"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/sigil-dev/sigil/internal/store"
)

func migrationCount(t *testing.T, path string) int {
	t.Helper()
	db, err := sql.Open(driverName, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM schema_migrations`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestMigrationsIdempotentOnReopen(t *testing.T) {
	ctx := context.Background()
	ms, err := store.LoadMigrations(sqliteMigrations, "migrations")
	if err != nil || len(ms) == 0 {
		t.Fatalf("loadMigrations = %d, %v", len(ms), err)
	}
	st, path := openStore(t)
	d, _, _ := enrolled(t, st, "reopen", 1)
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		st, err := Open(ctx, path)
		if err != nil {
			t.Fatalf("reopen: %v", err)
		}
		got, err := st.Device(ctx, d.EKHash)
		st.Close()
		if err != nil || got.AKHash != d.AKHash {
			t.Fatalf("device after reopen = %+v, %v", got, err)
		}
		if n := migrationCount(t, path); n != len(ms) {
			t.Fatalf("schema_migrations has %d rows, want %d", n, len(ms))
		}
	}
}

func TestMigrationsRefuseForeignSchema(t *testing.T) {
	for _, tc := range []struct {
		name, sql, want string
	}{
		{"newer", `INSERT INTO schema_migrations SELECT max(version) + 1, 'future', 0 FROM schema_migrations`, "is newer than this build"},
		{"diverged", `UPDATE schema_migrations SET name = 'other' WHERE version = 1`, `is "other" in the database`},
		{"gap", `DELETE FROM schema_migrations WHERE version = 1`, "has version 2 where 1 was expected"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, path := openStore(t)
			st.Close()
			db, err := sql.Open(driverName, path)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := db.Exec(tc.sql); err != nil {
				t.Fatal(err)
			}
			db.Close()
			st, err = Open(context.Background(), path)
			if err == nil {
				st.Close()
				t.Fatal("Open succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Open = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestLoadMigrationsNumbering(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files []string
		ok    bool
	}{
		{"in order", []string{"0001_a.sql", "0002_b.sql"}, true},
		{"gap", []string{"0001_a.sql", "0003_c.sql"}, false},
		{"duplicate", []string{"0001_a.sql", "0001_b.sql"}, false},
		{"unnumbered", []string{"a.sql"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fsys := fstest.MapFS{}
			for _, f := range tc.files {
				fsys["m/"+f] = &fstest.MapFile{Data: []byte("SELECT 1;")}
			}
			_, err := store.LoadMigrations(fsys, "m")
			if (err == nil) != tc.ok {
				t.Fatalf("store.LoadMigrations(%v) = %v, want ok=%v", tc.files, err, tc.ok)
			}
		})
	}
}

// TestMigrationAtomic: a failing migration leaves no trace of the ones
// before it in the same run.
func TestMigrationAtomic(t *testing.T) {
	st, path := openStore(t)
	st.Close()
	w, err := openSQLitePool(context.Background(), path+"?_txlock=immediate&_pragma=foreign_keys(1)&_pragma=journal_mode(WAL)", 1)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	ms, _ := store.LoadMigrations(sqliteMigrations, "migrations")
	ms = append(ms,
		migration{Version: len(ms) + 1, Name: "good", SQL: `CREATE TABLE extra (x INTEGER)`},
		migration{Version: len(ms) + 2, Name: "bad", SQL: `CREATE TABLE broken (`})
	err = migrate(context.Background(), w, ms)
	if err == nil || !strings.Contains(err.Error(), "_bad") {
		t.Fatalf("migrate = %v, want the bad migration's error", err)
	}
	var n int
	err = w.QueryRow(`SELECT count(*) FROM extra`).Scan(&n)
	if err == nil || !strings.Contains(err.Error(), "no such table") {
		t.Fatalf("table of the rolled-back migration: %v, want no such table", err)
	}
	if n := migrationCount(t, path); n != len(ms)-2 {
		t.Fatalf("schema_migrations has %d rows, want %d", n, len(ms)-2)
	}
}
