package sqlite

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/internal/store/storetest"
)

// TestKnownExternalNotInserted: an exchange from an external token this
// store has recorded runs no INSERT of it.
func TestKnownExternalNotInserted(t *testing.T) {
	t.Parallel()
	b := storetest.Backend{
		New:  func(t testing.TB) string { return "sqlite:" + filepath.Join(t.TempDir(), "sigil.db") },
		Open: func(ctx context.Context, dsn string) (store.Store, error) { return Open(ctx, dsn) },
	}
	storetest.KnownExternalNotInserted(t, b, func(t *testing.T, dsn string) {
		db, err := sql.Open(driverName, strings.TrimPrefix(dsn, "sqlite:"))
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if _, err := db.Exec(`CREATE TRIGGER refuse_external BEFORE INSERT ON tokens
			WHEN NEW.kind = 'external' BEGIN SELECT RAISE(ABORT, 'external token inserted'); END`); err != nil {
			t.Fatal(err)
		}
	})
}
