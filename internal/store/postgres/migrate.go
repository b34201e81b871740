package postgres

import (
	"context"
	"embed"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sigil-dev/sigil/internal/store"
)

//go:embed migrations/*.sql
var pgMigrations embed.FS

// A migration is one schema change (store.Migration).
type migration = store.Migration

// migrateLock is the advisory lock key migrate holds: the first 8 bytes
// of "sigil.store.migrate" as a big-endian integer.
const migrateLock int64 = 0x736967696c2e7374

// migrate applies the migrations the database lacks, in one transaction
// that first takes a transaction-scoped advisory lock
// (pg_advisory_xact_lock): of replicas opening one database at once, one
// migrates and the others, waiting for the lock, find it done. It refuses
// a database migrated by a newer or a diverging build.
func migrate(ctx context.Context, pool *pgxpool.Pool) error {
	ms, err := store.LoadMigrations(pgMigrations, "migrations")
	if err != nil {
		return err
	}
	return pgx.BeginTxFunc(ctx, pool, pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, migrateLock); err != nil {
			return fmt.Errorf("migrate: lock: %w", err)
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version    BIGINT NOT NULL PRIMARY KEY,
			name       TEXT   NOT NULL,
			applied_at BIGINT NOT NULL)`); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		applied, err := appliedMigrations(ctx, tx)
		if err != nil {
			return err
		}
		if err := store.CheckApplied(applied, ms); err != nil {
			return err
		}
		for _, m := range ms[len(applied):] {
			if err := apply(ctx, tx, m); err != nil {
				return err
			}
		}
		return nil
	})
}

// apply runs migration m and records it.
func apply(ctx context.Context, tx pgx.Tx, m migration) error {
	if _, err := tx.Exec(ctx, m.SQL); err != nil {
		return fmt.Errorf("migration %04d_%s: %w", m.Version, m.Name, err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)`,
		m.Version, m.Name, micros(time.Now())); err != nil {
		return fmt.Errorf("migration %04d_%s: record: %w", m.Version, m.Name, err)
	}
	return nil
}

// appliedMigrations returns the names of the applied migrations by version.
func appliedMigrations(ctx context.Context, q querier) ([]string, error) {
	rows, err := q.Query(ctx, `SELECT version, name FROM schema_migrations ORDER BY version`)
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	type row struct {
		v    int64
		name string
	}
	rs, err := scanAll(rows, func(r pgx.Row) (x row, err error) { return x, r.Scan(&x.v, &x.name) })
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	names := make([]string, 0, len(rs))
	for i, r := range rs {
		if r.v != int64(i+1) {
			return nil, fmt.Errorf("migrate: schema_migrations has version %d where %d was expected", r.v, i+1)
		}
		names = append(names, r.name)
	}
	return names, nil
}
