package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/internal/store/storetest"
	"github.com/sigil-dev/sigil/testenv"
)

// TestOpenConcurrently: replicas starting at once on a new database all
// open it, and the schema is migrated once.
func TestOpenConcurrently(t *testing.T) {
	dsn := testenv.PostgresDB(t)
	const replicas = 8
	var wg sync.WaitGroup
	errs := make([]error, replicas)
	start := make(chan struct{})
	for i := range replicas {
		wg.Go(func() {
			<-start
			var st store.Store
			if st, errs[i] = Open(context.Background(), dsn); errs[i] == nil {
				errs[i] = st.Ping(context.Background())
				st.Close()
			}
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("replica %d: %v", i, err)
		}
	}
	ms, err := store.LoadMigrations(pgMigrations, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	if n := count(t, dsn, `SELECT count(*) FROM schema_migrations`); n != len(ms) {
		t.Fatalf("schema_migrations has %d rows, want %d", n, len(ms))
	}
}

// TestOpenRefusesNewerSchema: a database migrated by a newer build is
// refused, not downgraded.
func TestOpenRefusesNewerSchema(t *testing.T) {
	dsn := testenv.PostgresDB(t)
	st, err := Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	exec(t, dsn, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (99, 'future', 0)`)
	st, err = Open(context.Background(), dsn)
	if err == nil {
		st.Close()
		t.Fatal("Open succeeded on a newer schema")
	}
	ms, lerr := store.LoadMigrations(pgMigrations, "migrations")
	if lerr != nil {
		t.Fatal(lerr)
	}
	if want := fmt.Sprintf("schema_migrations has version 99 where %d was expected", len(ms)+1); !strings.Contains(err.Error(), want) {
		t.Fatalf("Open = %v", err)
	}
}

// TestStoreIsFeedNotifier: what Open returns offers the feed its
// notifications (the tokens feed finds them by type assertion).
func TestStoreIsFeedNotifier(t *testing.T) {
	st, err := Open(context.Background(), testenv.PostgresDB(t))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, ok := st.(store.FeedNotifier); !ok {
		t.Fatalf("%T is not a store.FeedNotifier", st)
	}
}

func exec(t *testing.T, dsn, sql string) {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(context.Background(), sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func count(t *testing.T, dsn, sql string) int {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(context.Background(), sql).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// TestReadInsideTxWithPoolFull: the Store's reads do not wait for the
// connections transactions hold, even with one connection per pool.
func TestReadInsideTxWithPoolFull(t *testing.T) {
	st, err := Open(context.Background(), testenv.PostgresDB(t)+"&pool_max_conns=1")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	err = st.Tx(context.Background(), func(tx store.Tx) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := st.Ping(ctx); err != nil {
			return err
		}
		_, err := st.Device(ctx, "none")
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		return fmt.Errorf("Device = %v, want ErrNotFound", err)
	})
	if err != nil {
		t.Fatalf("a read inside a Tx: %v", err)
	}
}

// TestStoreSurvivesRestart: while the database is down, calls fail
// promptly; once it is back, the same Store serves again, without being
// reopened.
func TestStoreSurvivesRestart(t *testing.T) {
	pg := testenv.StartPostgres(t)
	st, err := Open(context.Background(), pg.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.AppendAudit(context.Background(), storetest.Entry("before")); err != nil {
		t.Fatal(err)
	}
	if err := pg.Stop(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := st.Ping(ctx); err == nil || ctx.Err() != nil {
		t.Fatalf("Ping with the database down = %v (ctx: %v), want a prompt error", err, ctx.Err())
	}
	if err := pg.Start(); err != nil {
		t.Fatal(err)
	}
	testenv.WaitForNil(t, 30*time.Second, "the store to serve again", func() error {
		_, err := st.AppendAudit(context.Background(), storetest.Entry("after"))
		return err
	})
	if n, err := st.AuditSize(context.Background()); err != nil || n != 2 {
		t.Fatalf("AuditSize = %d, %v; want 2", n, err)
	}
}
