package sqlite

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestOpenDSN(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		dsn  string
	}{
		{"bare path", filepath.Join(dir, "a.db")},
		{"sqlite scheme", "sqlite:" + filepath.Join(dir, "b.db")},
		{"sqlite scheme with slashes", "sqlite://" + filepath.Join(dir, "c.db")},
		{"file URI", "file:" + filepath.Join(dir, "d.db")},
		{"extra pragma", filepath.Join(dir, "e.db") + "?_pragma=synchronous(NORMAL)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := openPath(t, tc.dsn)
			if err := st.Ping(context.Background()); err != nil {
				t.Fatalf("Ping: %v", err)
			}
		})
	}
}

func TestOpenDSNErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, dsn, want string
	}{
		{"empty", "", "names no file"},
		{"sqlite without path", "sqlite:", "names no file"},
		{"memory", ":memory:", "in-memory sqlite is not supported"},
		{"memory URI", "file::memory:?cache=shared", "in-memory sqlite is not supported"},
		{"memory mode", "file:x.db?mode=memory", "in-memory sqlite is not supported"},
		{"txlock", filepath.Join(dir, "x.db") + "?_txlock=deferred", "sets _txlock, which the store manages"},
		{"journal mode", filepath.Join(dir, "x.db") + "?_pragma=journal_mode(DELETE)", "sets journal_mode, which the store manages"},
		{"foreign keys off", filepath.Join(dir, "x.db") + "?_pragma=Foreign_Keys=0", "sets foreign_keys, which the store manages"},
		{"missing directory", filepath.Join(dir, "nope", "x.db"), "no such file or directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, err := Open(context.Background(), tc.dsn)
			if err == nil {
				st.Close()
				t.Fatal("Open succeeded")
			}
			if !strings.HasPrefix(err.Error(), "store: ") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Open(%q) = %v, want %q", tc.dsn, err, tc.want)
			}
		})
	}
}

// TestSQLiteSettings checks the settings the store's concurrency relies on.
func TestSQLiteSettings(t *testing.T) {
	st, _ := openStore(t)
	s := st.(*sqliteStore)
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		db     *sql.DB
		pragma string
		want   string
	}{
		{"writer journal", s.w, "journal_mode", "wal"},
		{"reader journal", s.r, "journal_mode", "wal"},
		{"writer foreign keys", s.w, "foreign_keys", "1"},
		{"reader foreign keys", s.r, "foreign_keys", "1"},
		{"writer busy timeout", s.w, "busy_timeout", "5000"},
		{"reader busy timeout", s.r, "busy_timeout", "5000"},
		{"writer synchronous FULL", s.w, "synchronous", "2"},
		{"writer not query only", s.w, "query_only", "0"},
		{"reader query only", s.r, "query_only", "1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got string
			if err := tc.db.QueryRowContext(ctx, "PRAGMA "+tc.pragma).Scan(&got); err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Fatalf("PRAGMA %s = %s, want %s", tc.pragma, got, tc.want)
			}
		})
	}
	if got := s.w.Stats().MaxOpenConnections; got != 1 {
		t.Errorf("writer pool MaxOpenConnections = %d, want 1", got)
	}
}

func TestDatabaseFilesPrivate(t *testing.T) {
	st, path := openStore(t)
	enrolled(t, st, "d1", 1) // the WAL exists while the store is open
	for _, f := range []string{path, path + "-wal", path + "-shm"} {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", filepath.Base(f), fi.Mode().Perm())
		}
	}
}
