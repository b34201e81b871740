package postgres

import (
	"context"
	"testing"

	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/internal/store/storetest"
	"github.com/sigil-dev/sigil/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestConformance runs the store contract's suite on databases of a real
// PostgreSQL cluster, with writers in goroutines, in several pools and in
// several processes.
func TestConformance(t *testing.T) {
	storetest.Run(t, storetest.Backend{
		New: func(t testing.TB) string { return testenv.PostgresDB(t) },
		Open: func(ctx context.Context, dsn string) (store.Store, error) {
			return Open(ctx, dsn)
		},
	})
}
