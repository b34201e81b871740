package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"time"

	"github.com/sigil-dev/sigil/internal/store"
)

//go:embed migrations/*.sql
var sqliteMigrations embed.FS

// A migration is one schema change (store.Migration).
type migration = store.Migration

// migrationSteps are the Go parts of migrations, by file name: each runs
// after its migration's SQL, in the migration's transaction.
var migrationSteps = map[string]func(ctx context.Context, q querier) error{
	"0006_audit_nodes":             backfillAuditNodes,
	"0008_certificate_revocations": backfillCertificateRevocations,
}

// migrate applies, in one transaction, the migrations db has not seen yet,
// recording each in schema_migrations. It refuses a database migrated by a
// newer or a diverging build.
func migrate(ctx context.Context, db *sql.DB, ms []migration) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: migrate: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    BIGINT NOT NULL PRIMARY KEY,
		name       TEXT   NOT NULL,
		applied_at BIGINT NOT NULL)`); err != nil {
		return fmt.Errorf("store: migrate: %w", err)
	}
	applied, err := appliedMigrations(ctx, sqlQuerier{tx})
	if err != nil {
		return err
	}
	if err := store.CheckApplied(applied, ms); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	for _, m := range ms[len(applied):] {
		if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
			return fmt.Errorf("store: migration %04d_%s: %w", m.Version, m.Name, err)
		}
		if step := migrationSteps[fmt.Sprintf("%04d_%s", m.Version, m.Name)]; step != nil {
			if err := step(ctx, sqlQuerier{tx}); err != nil {
				return fmt.Errorf("store: migration %04d_%s: %w", m.Version, m.Name, err)
			}
		}
		if _, err := tx.ExecContext(ctx,
			`INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`,
			m.Version, m.Name, micros(time.Now())); err != nil {
			return fmt.Errorf("store: migration %04d_%s: record: %w", m.Version, m.Name, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: migrate: commit: %w", err)
	}
	return nil
}

// appliedMigrations returns the names of the applied migrations by version.
func appliedMigrations(ctx context.Context, q querier) ([]string, error) {
	rows, err := q.QueryContext(ctx, `SELECT version, name FROM schema_migrations ORDER BY version`)
	if err != nil {
		return nil, fmt.Errorf("store: migrate: %w", err)
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var v int
		var name string
		if err := rows.Scan(&v, &name); err != nil {
			return nil, fmt.Errorf("store: migrate: %w", err)
		}
		if v != len(names)+1 {
			return nil, fmt.Errorf("store: migrate: schema_migrations has version %d where %d was expected", v, len(names)+1)
		}
		names = append(names, name)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: migrate: %w", err)
	}
	return names, nil
}
