package postgres

import (
	"context"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

// TestTokenRowChecks: the tokens table refuses, by itself, every row the
// CHECK constraints of migration 0001 refused (migration 0013 moved them
// into a trigger), on INSERT and on UPDATE, with a check_violation; and
// takes the rows they took.
func TestTokenRowChecks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	conn := migratedConn(t)
	const insert = `INSERT INTO tokens (jti, parent_jti, sub, client_id, act, aud, scope, issued_at, expires_at,
		cnf, kind, handle_hash, kid, revoked_at, revocation_reason) VALUES `
	const good = `('p', NULL, 's', 'c', '[]', '[]', '', 1, 2, 'x', 'jwt', NULL, 'k', NULL, '')`
	if _, err := conn.Exec(ctx, insert+good); err != nil {
		t.Fatalf("a valid token: %v", err)
	}
	hash := `decode(repeat('ab', 32), 'hex')`
	for _, c := range []struct{ name, row string }{
		{"empty jti", `('', NULL, 's', 'c', '[]', '[]', '', 1, 2, 'x', 'jwt', NULL, 'k', NULL, '')`},
		{"unknown kind", `('t', NULL, 's', 'c', '[]', '[]', '', 1, 2, 'x', 'jwe', NULL, 'k', NULL, '')`},
		{"short handle hash", `('t', NULL, 's', 'c', '[]', '[]', '', 1, 2, 'x', 'opaque', '\x0102', 'k', NULL, '')`},
		{"its own parent", `('t', 't', 's', 'c', '[]', '[]', '', 1, 2, 'x', 'jwt', NULL, 'k', NULL, '')`},
		{"expires when issued", `('t', NULL, 's', 'c', '[]', '[]', '', 2, 2, 'x', 'jwt', NULL, 'k', NULL, '')`},
		{"expires before issued", `('t', NULL, 's', 'c', '[]', '[]', '', 3, 2, 'x', 'jwt', NULL, 'k', NULL, '')`},
		{"opaque without a handle", `('t', NULL, 's', 'c', '[]', '[]', '', 1, 2, 'x', 'opaque', NULL, 'k', NULL, '')`},
		{"a handle, not opaque", `('t', NULL, 's', 'c', '[]', '[]', '', 1, 2, 'x', 'jwt', ` + hash + `, 'k', NULL, '')`},
		{"a reason, not revoked", `('t', NULL, 's', 'c', '[]', '[]', '', 1, 2, 'x', 'jwt', NULL, 'k', NULL, 'why')`},
		{"external not named ext:", `('t', NULL, 's', '', '[]', '[]', '', 1, 2, '', 'external', NULL, '', NULL, '')`},
		{"named ext:, not external", `('ext:t', NULL, 's', 'c', '[]', '[]', '', 1, 2, 'x', 'jwt', NULL, 'k', NULL, '')`},
		{"external with a parent", `('ext:t', 'p', 's', '', '[]', '[]', '', 1, 2, '', 'external', NULL, '', NULL, '')`},
		{"external with a client", `('ext:t', NULL, 's', 'c', '[]', '[]', '', 1, 2, '', 'external', NULL, '', NULL, '')`},
		{"external with a cnf", `('ext:t', NULL, 's', '', '[]', '[]', '', 1, 2, 'x', 'external', NULL, '', NULL, '')`},
		{"external with a kid", `('ext:t', NULL, 's', '', '[]', '[]', '', 1, 2, '', 'external', NULL, 'k', NULL, '')`},
	} {
		_, err := conn.Exec(ctx, insert+c.row)
		if pe := (*pgconn.PgError)(nil); !errors.As(err, &pe) || pe.Code != "23514" {
			t.Errorf("%s: inserted, or not a check_violation: %v", c.name, err)
		}
	}
	for _, c := range []struct{ name, row string }{
		{"opaque", `('o', NULL, 's', 'c', '[]', '[]', '', 1, 2, 'x', 'opaque', ` + hash + `, 'k', NULL, '')`},
		{"external", `('ext:e', NULL, 's', '', '[]', '[]', '', 1, 2, '', 'external', NULL, '', NULL, '')`},
		{"revoked with a reason", `('r', 'p', 's', 'c', '[]', '[]', '', 1, 2, 'x', 'txn', NULL, 'k', 5, 'why')`},
	} {
		if _, err := conn.Exec(ctx, insert+c.row); err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
	}
	// Updates: only revocation may change a token (tokens_immutable), and
	// a reason needs it.
	_, err := conn.Exec(ctx, `UPDATE tokens SET revocation_reason = 'why' WHERE jti = 'p'`)
	if pe := (*pgconn.PgError)(nil); !errors.As(err, &pe) || pe.Code != "23514" {
		t.Errorf("a reason without a revocation: updated, or not a check_violation: %v", err)
	}
	if _, err := conn.Exec(ctx, `UPDATE tokens SET revoked_at = 3, revocation_reason = 'why' WHERE jti = 'p'`); err != nil {
		t.Errorf("revoke: %v", err)
	}
}
