package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"strings"
	"time"
)

//go:embed migrations/*.sql
var sqliteMigrations embed.FS

// A migration is one schema change, from a file named NNNN_name.sql.
type migration struct {
	version int
	name    string
	sql     string
}

// migrationSteps are the Go parts of migrations, by file name: each runs
// after its migration's SQL, in the migration's transaction.
var migrationSteps = map[string]func(ctx context.Context, q querier) error{
	"0006_audit_nodes":             backfillAuditNodes,
	"0008_certificate_revocations": backfillCertificateRevocations,
}

// loadMigrations reads the migrations in dir of fsys, which must be
// numbered 1, 2, 3… without gaps.
func loadMigrations(fsys fs.FS, dir string) ([]migration, error) {
	files, err := fs.Glob(fsys, path.Join(dir, "*.sql")) // sorted
	if err != nil {
		return nil, err
	}
	ms := make([]migration, 0, len(files))
	for i, f := range files {
		num, name, _ := strings.Cut(strings.TrimSuffix(path.Base(f), ".sql"), "_")
		v, err := strconv.Atoi(num)
		if err != nil || v != i+1 {
			return nil, fmt.Errorf("store: migration %s: want number %04d", f, i+1)
		}
		b, err := fs.ReadFile(fsys, f)
		if err != nil {
			return nil, err
		}
		ms = append(ms, migration{version: v, name: name, sql: string(b)})
	}
	return ms, nil
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
	if err := checkApplied(applied, ms); err != nil {
		return err
	}
	for _, m := range ms[len(applied):] {
		if _, err := tx.ExecContext(ctx, m.sql); err != nil {
			return fmt.Errorf("store: migration %04d_%s: %w", m.version, m.name, err)
		}
		if step := migrationSteps[fmt.Sprintf("%04d_%s", m.version, m.name)]; step != nil {
			if err := step(ctx, sqlQuerier{tx}); err != nil {
				return fmt.Errorf("store: migration %04d_%s: %w", m.version, m.name, err)
			}
		}
		if _, err := tx.ExecContext(ctx,
			`INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`,
			m.version, m.name, micros(time.Now())); err != nil {
			return fmt.Errorf("store: migration %04d_%s: record: %w", m.version, m.name, err)
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

// checkApplied makes sure the applied migrations are a prefix of ms.
func checkApplied(applied []string, ms []migration) error {
	if len(applied) > len(ms) {
		return fmt.Errorf("store: schema version %d is newer than this build's %d", len(applied), len(ms))
	}
	for i, name := range applied {
		if name != ms[i].name {
			return fmt.Errorf("store: schema migration %04d is %q in the database but %q in this build", i+1, name, ms[i].name)
		}
	}
	return nil
}
