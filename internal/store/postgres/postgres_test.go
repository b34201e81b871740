package postgres

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/internal/store/storetest"
	"github.com/sigil-dev/sigil/testenv"
)

func TestMain(m *testing.M) {
	if spec := os.Getenv(appendWorkerEnv); spec != "" {
		if err := appendWorker(spec); err != nil {
			fmt.Fprintln(os.Stderr, "writer process:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	testenv.Main(m)
}

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
