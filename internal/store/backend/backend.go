package backend

import (
	"context"
	"fmt"
	"strings"

	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/internal/store/postgres"
	"github.com/sigil-dev/sigil/internal/store/sqlite"
)

// Open opens the store dsn names, creating and migrating its schema as
// needed. See the sqlite and postgres packages for what their DSNs may
// carry. Errors never repeat a DSN with a scheme other than sqlite's: it
// may hold a password.
func Open(ctx context.Context, dsn string) (store.Store, error) {
	switch {
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		return postgres.Open(ctx, dsn)
	case strings.HasPrefix(dsn, "sqlite:"):
		return sqlite.Open(ctx, dsn)
	case strings.Contains(dsn, "://"):
		return nil, fmt.Errorf("store: unsupported DSN scheme in %q", redact(dsn))
	default:
		return sqlite.Open(ctx, dsn)
	}
}

// redact drops everything after the scheme, which may hold a password.
func redact(dsn string) string {
	scheme, _, _ := strings.Cut(dsn, "://")
	return scheme + "://…"
}
