package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestPostgres: a private cluster serves a fresh database; Stop ends it
// by its PID (the port refuses connections), Start brings it back on the
// same port.
func TestPostgres(t *testing.T) {
	pg := StartPostgres(t)
	dsn := pg.NewDatabase(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_tables WHERE schemaname = 'public'`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("tables in a new database: %d, %v", n, err)
	}
	conn.Close(ctx)
	if err := pg.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if c, err := pgx.Connect(ctx, dsn); err == nil {
		c.Close(ctx)
		t.Fatal("the cluster answers after Stop")
	}
	if err := pg.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	conn, err = pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect after Start, with the DSN handed out before: %v", err)
	}
	conn.Close(ctx)
}

// TestPostgresDBShared: databases on the shared cluster are distinct.
func TestPostgresDBShared(t *testing.T) {
	a, b := PostgresDB(t), PostgresDB(t)
	if a == b {
		t.Fatalf("two databases with one DSN: %s", a)
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, a)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `CREATE TABLE only_in_a (x int)`); err != nil {
		t.Fatal(err)
	}
	conn2, err := pgx.Connect(ctx, b)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn2.Close(ctx)
	if _, err := conn2.Exec(ctx, `SELECT * FROM only_in_a`); err == nil {
		t.Fatal("a table of one database is seen in the other")
	}
}

// TestPostgresOutlivesNoTest: a test binary that dies without stopping
// its cluster (killed at its timeout) takes the cluster down with it.
func TestPostgresOutlivesNoTest(t *testing.T) {
	if os.Getenv("SIGIL_TESTENV_ORPHAN") != "" {
		pg := StartPostgres(t)
		fmt.Println(pg.DSN("postgres"), pg.Dir)
		os.Stdout.Sync()
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestPostgresOutlivesNoTest$", "-test.count=1")
	cmd.Env = append(os.Environ(), "SIGIL_TESTENV_ORPHAN=1")
	out, _ := cmd.Output()
	dsn, dir, _ := strings.Cut(strings.TrimSpace(string(out)), " ")
	if !strings.HasPrefix(dsn, "postgres://") || dir == "" {
		t.Fatalf("the child printed %q", out)
	}
	t.Cleanup(func() { os.RemoveAll(filepath.Dir(dir)) }) // the child's t.TempDir root
	WaitForNil(t, 30*time.Second, "the orphaned cluster to stop", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, dsn)
		if err != nil {
			return nil
		}
		c.Close(ctx)
		return errors.New("still answers")
	})
}
