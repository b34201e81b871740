package backend

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sigil-dev/sigil/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func TestOpen(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		dsn  string
	}{
		{"bare path", filepath.Join(dir, "a.db")},
		{"sqlite scheme", "sqlite:" + filepath.Join(dir, "b.db")},
		{"sqlite scheme with slashes", "sqlite://" + filepath.Join(dir, "c.db")},
		{"file URI", "file:" + filepath.Join(dir, "d.db")},
		{"postgres", testenv.PostgresDB(t)},
		{"postgresql", "postgresql" + strings.TrimPrefix(testenv.PostgresDB(t), "postgres")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, err := Open(context.Background(), tc.dsn)
			if err != nil {
				t.Fatalf("Open(%q): %v", tc.dsn, err)
			}
			defer st.Close()
			if err := st.Ping(context.Background()); err != nil {
				t.Fatalf("Ping: %v", err)
			}
		})
	}
}

func TestOpenRefuses(t *testing.T) {
	for _, tc := range []struct {
		name, dsn, want string
	}{
		{"postgres, unparsable, hides credentials", "postgres://sigil:hunter2@db:port/sigil", "cannot parse it"},
		{"postgres, unreachable, hides credentials", "postgres://sigil:hunter2@127.0.0.1:1/sigil?connect_timeout=5", "open postgres"},
		{"other scheme hides credentials", "mysql://root:hunter2@db", `unsupported DSN scheme in "mysql://…"`},
		{"sqlite without path", "sqlite:", "names no file"},
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
			if strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("error leaks the password: %v", err)
			}
		})
	}
}
