package testenv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// PostgreSQL on Debian, and how to install it.
const (
	PostgresBin     = "/usr/lib/postgresql/15/bin"
	InstallPostgres = "apt-get install postgresql (or run make deps)"

	// postgresOSUser runs the server when the tests run as root, which
	// initdb and postgres refuse: Debian's package creates it.
	postgresOSUser = "postgres"
	// postgresRole is the cluster's superuser role.
	postgresRole = "sigil"
)

// Postgres is a private PostgreSQL cluster: its own data directory, a
// loopback port reserved across processes (ports.go), a unix socket
// directory only its owner can enter, password authentication. Connect
// with DSN or NewDatabase.
type Postgres struct {
	Dir      string // holds data/, sock/, the password file and the server log
	Port     int
	password string

	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error
	ports   *portPair
	dbs     atomic.Int64
	durable bool

	watchdog     *exec.Cmd      // stops the server if this process dies
	watchdogPipe io.WriteCloser // its stdin, open while this process runs
}

// StartPostgres starts a cluster private to t, under t.TempDir(), stopped
// by its PID when t ends, durable as in production (fsync on). Use it where a test stops or restarts the
// database; other tests share one cluster per test binary (PostgresDB).
func StartPostgres(t testing.TB) *Postgres {
	t.Helper()
	pg, err := startPostgres(context.Background(), t.TempDir(), true)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(func() {
		if err := pg.shutdown(); err != nil {
			t.Errorf("testenv: %v", err)
		}
	})
	return pg
}

// sharedPostgres is the test binary's cluster, started by the first
// PostgresDB and stopped by Main.
var sharedPostgres struct {
	once sync.Once
	pg   *Postgres
	dir  string
	err  error
}

// mainRunning says Main runs the tests, and so stops the shared cluster.
var mainRunning atomic.Bool

// PostgresDB returns the DSN of a new, empty schema (the DSN sets its
// search_path), dropped when t ends, in a database of the cluster the test
// binary shares (started at the first call, under
// $TMPDIR/sigil-postgres-*). A schema costs milliseconds where a database
// costs a second. That cluster does not fsync: it is for tests of
// behaviour; measure on StartPostgres's, which does. The package's
// TestMain must call Main, which stops the cluster when the tests are
// done.
func PostgresDB(t testing.TB) string {
	t.Helper()
	if !mainRunning.Load() {
		t.Fatal("testenv: PostgresDB: call testenv.Main(m) from the package's TestMain, which stops the shared cluster")
	}
	sharedPostgres.once.Do(func() {
		sharedPostgres.dir, sharedPostgres.err = os.MkdirTemp("", "sigil-postgres-")
		if sharedPostgres.err == nil {
			sharedPostgres.pg, sharedPostgres.err = startPostgres(context.Background(), sharedPostgres.dir, false)
		}
		if sharedPostgres.err == nil {
			sharedPostgres.err = sharedPostgres.pg.exec(context.Background(), "CREATE DATABASE tests")
		}
	})
	if sharedPostgres.err != nil {
		t.Fatalf("testenv: %v", sharedPostgres.err)
	}
	return sharedPostgres.pg.NewSchema(t, "tests")
}

// NewSchema creates a new, empty schema in database db, dropped with all
// it holds when t ends if the cluster still runs, and returns a DSN whose
// search_path is that schema.
func (pg *Postgres) NewSchema(t testing.TB, db string) string {
	t.Helper()
	name := fmt.Sprintf("test_%d_%d", os.Getpid(), pg.dbs.Add(1))
	dsn := pg.DSN(db)
	if err := pg.execOn(context.Background(), dsn, "CREATE SCHEMA "+name); err != nil {
		t.Fatalf("testenv: postgres: %v", err)
	}
	t.Cleanup(func() {
		if pg.stopped() {
			return
		}
		if err := pg.execOn(context.Background(), dsn, "DROP SCHEMA "+name+" CASCADE"); err != nil {
			t.Errorf("testenv: postgres: %v", err)
		}
	})
	return dsn + "&search_path=" + name
}

// stopSharedPostgres stops the shared cluster and removes its directory.
func stopSharedPostgres() error {
	var err error
	if sharedPostgres.pg != nil {
		err = sharedPostgres.pg.shutdown()
	}
	if sharedPostgres.dir != "" {
		err = errors.Join(err, os.RemoveAll(sharedPostgres.dir))
	}
	return err
}

// RequirePostgres fails the test, with install instructions, if initdb
// or postgres is missing.
func RequirePostgres(t testing.TB) {
	t.Helper()
	if err := findPostgres(); err != nil {
		t.Fatalf("testenv: %v", err)
	}
}

func findPostgres() error {
	for _, bin := range []string{"initdb", "postgres"} {
		if _, err := os.Stat(filepath.Join(PostgresBin, bin)); err != nil {
			return fmt.Errorf("postgres: %s missing: %s", filepath.Join(PostgresBin, bin), InstallPostgres)
		}
	}
	if os.Geteuid() == 0 {
		if _, err := user.Lookup(postgresOSUser); err != nil {
			return fmt.Errorf("postgres: running as root needs the %q user to run the server: %s", postgresOSUser, InstallPostgres)
		}
	}
	return nil
}

// DSN returns the URL of database db on the cluster, over TCP on the
// loopback port with the superuser's password.
func (pg *Postgres) DSN(db string) string {
	u := url.URL{Scheme: "postgres", User: url.UserPassword(postgresRole, pg.password),
		Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(pg.Port)), Path: "/" + db, RawQuery: "sslmode=disable"}
	return u.String()
}

// NewDatabase creates a new, empty database, dropped (with whoever is
// still connected) when t ends if the cluster still runs, and returns its
// DSN.
func (pg *Postgres) NewDatabase(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("test_%d_%d", os.Getpid(), pg.dbs.Add(1))
	if err := pg.exec(context.Background(), "CREATE DATABASE "+name); err != nil {
		t.Fatalf("testenv: postgres: %v", err)
	}
	t.Cleanup(func() {
		if pg.stopped() {
			return
		}
		if err := pg.exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("testenv: postgres: %v", err)
		}
	})
	return pg.DSN(name)
}

// exec runs one statement on the maintenance database.
func (pg *Postgres) exec(ctx context.Context, sql string) error {
	return pg.execOn(ctx, pg.DSN("postgres"), sql)
}

// execOn runs one statement on the database dsn names.
func (pg *Postgres) execOn(ctx context.Context, dsn, sql string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, sql); err != nil {
		return fmt.Errorf("%s: %w", sql, err)
	}
	return nil
}

// stopped reports whether the server has exited.
func (pg *Postgres) stopped() bool {
	select {
	case <-pg.done:
		return true
	default:
		return false
	}
}

// PID is the postmaster's process id.
func (pg *Postgres) PID() int { return pg.cmd.Process.Pid }

// Stop shuts the server down (SIGINT to its PID: fast shutdown, clients
// disconnected) and waits for it to exit; its port stays reserved for
// Start. Stopping a stopped server does nothing. Use it to take the
// database away from a test; the cluster is stopped for good when the
// test ends.
func (pg *Postgres) Stop() error {
	if pg.cmd == nil {
		return nil
	}
	pg.stopWatchdog()
	if pg.stopped() {
		return nil
	}
	if err := pg.cmd.Process.Signal(syscall.SIGINT); err != nil {
		return fmt.Errorf("postgres: stop %d: %w", pg.PID(), err)
	}
	select {
	case <-pg.done:
		return nil
	case <-time.After(30 * time.Second):
		_ = pg.cmd.Process.Kill()
		<-pg.done
		return fmt.Errorf("postgres: %d did not stop in 30s; killed", pg.PID())
	}
}

// Start starts a stopped server again, on the same port: the DSNs handed
// out stay valid.
func (pg *Postgres) Start() error {
	if !pg.stopped() {
		return nil
	}
	if err := pg.run(context.Background(), pg.Port); err != nil {
		return fmt.Errorf("postgres: restart: %w", err)
	}
	return nil
}

// shutdown stops the server for good and releases its port.
func (pg *Postgres) shutdown() error {
	defer pg.ports.release()
	return pg.Stop()
}

// startPostgres makes a cluster in dir and starts it, durable (fsync, as
// in production) or not (faster, for tests of behaviour).
func startPostgres(ctx context.Context, dir string, durable bool) (*Postgres, error) {
	if err := findPostgres(); err != nil {
		return nil, err
	}
	pg := &Postgres{Dir: dir, password: randHex(16), durable: durable}
	if err := pg.initdb(ctx); err != nil {
		return nil, err
	}
	return pg, pg.launch(ctx)
}

// initdb creates the cluster's data directory, run as the postgres user
// when we are root.
func (pg *Postgres) initdb(ctx context.Context) error {
	pwfile := filepath.Join(pg.Dir, "pwfile")
	if err := os.WriteFile(pwfile, []byte(pg.password+"\n"), 0o600); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	for _, d := range []string{"data", "sock"} {
		if err := os.Mkdir(filepath.Join(pg.Dir, d), 0o700); err != nil {
			return fmt.Errorf("postgres: %w", err)
		}
	}
	if err := pg.handOver("pwfile", "data", "sock"); err != nil {
		return err
	}
	cmd := pg.command(ctx, "initdb", "--pgdata", filepath.Join(pg.Dir, "data"), "--username", postgresRole,
		"--pwfile", pwfile, "--auth", "scram-sha-256", "--encoding", "UTF8", "--locale", "C", "--no-sync")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("postgres: initdb: %w\n%s", err, tail(out, 2000))
	}
	return os.Remove(pwfile)
}

// handOver gives the server's user the named files under Dir, and a way
// into Dir, when we are root; as anyone else the server is us.
func (pg *Postgres) handOver(names ...string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	u, err := user.Lookup(postgresOSUser)
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	for _, n := range names {
		if err := os.Chown(filepath.Join(pg.Dir, n), uid, gid); err != nil {
			return fmt.Errorf("postgres: %w", err)
		}
	}
	// Dir and its parent (t.TempDir's test directory) are 0700 root:
	// let the server's user pass through them, not list them.
	for _, d := range []string{pg.Dir, filepath.Dir(pg.Dir)} {
		if err := os.Chmod(d, 0o711); err != nil {
			return fmt.Errorf("postgres: %w", err)
		}
	}
	return nil
}

// command runs one of PostgreSQL's programs, as the postgres user when we
// are root (setpriv execs it in place, so the PID is the program's).
func (pg *Postgres) command(ctx context.Context, prog string, args ...string) *exec.Cmd {
	path := filepath.Join(PostgresBin, prog)
	if os.Geteuid() != 0 {
		return exec.CommandContext(ctx, path, args...)
	}
	pre := []string{"--reuid=" + postgresOSUser, "--regid=" + postgresOSUser, "--init-groups", "--", path}
	return exec.CommandContext(ctx, "setpriv", append(pre, args...)...)
}

// launch starts the server on a reserved port pair, retrying with a fresh
// pair when a process outside the reservation took the port first.
func (pg *Postgres) launch(ctx context.Context) error {
	var lastErr error
	for range 10 {
		pair, err := reservePair()
		if err != nil {
			return fmt.Errorf("postgres: %w", err)
		}
		if lastErr = pg.run(ctx, pair.Port); lastErr == nil {
			pg.ports = pair
			return nil
		}
		pair.release()
		if !errors.Is(lastErr, errPortTaken) {
			break
		}
	}
	return fmt.Errorf("postgres: start: %w", lastErr)
}

// run starts postgres on port and waits until it accepts connections.
func (pg *Postgres) run(ctx context.Context, port int) error {
	logPath := filepath.Join(pg.Dir, "postgres.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	defer logf.Close()
	args := []string{"-D", filepath.Join(pg.Dir, "data"),
		"-c", "listen_addresses=127.0.0.1", "-c", "port=" + strconv.Itoa(port),
		"-c", "unix_socket_directories=" + filepath.Join(pg.Dir, "sock"),
		"-c", "max_connections=300", "-c", "shared_buffers=32MB"}
	if !pg.durable {
		args = append(args, "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")
	}
	cmd := pg.command(context.Background(), "postgres", args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("postgres: run: %w", err)
	}
	done := make(chan struct{})
	go func() { pg.waitErr = cmd.Wait(); close(done) }()
	pg.cmd, pg.done, pg.Port = cmd, done, port
	if err := pg.startWatchdog(); err != nil {
		_ = cmd.Process.Kill()
		<-done
		return err
	}
	return pg.awaitReady(ctx, logPath)
}

// startWatchdog starts a process that stops the server if this process
// dies without stopping it (a test binary killed at its timeout, or
// interrupted): it waits for the end of a pipe only this process writes,
// which the kernel closes when this process exits, then sends the server
// SIGINT. It is in a process group of its own, so that an interrupt of
// the test's group does not take it down before it has done its job.
func (pg *Postgres) startWatchdog() error {
	cmd := exec.Command("sh", "-c", `read -r _; kill -INT "$1"`, "sh", strconv.Itoa(pg.PID()))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	pipe, err := cmd.StdinPipe()
	if err != nil {
		return fmt.Errorf("postgres: watchdog: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("postgres: watchdog: %w", err)
	}
	pg.watchdog, pg.watchdogPipe = cmd, pipe
	return nil
}

// stopWatchdog ends the watchdog without letting it signal anything.
func (pg *Postgres) stopWatchdog() {
	if pg.watchdog == nil {
		return
	}
	_ = pg.watchdog.Process.Kill()
	_ = pg.watchdog.Wait()
	_ = pg.watchdogPipe.Close()
	pg.watchdog = nil
}

// awaitReady waits until the server answers a query, or exits.
func (pg *Postgres) awaitReady(ctx context.Context, logPath string) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for {
		err := pg.exec(ctx, "SELECT 1")
		if err == nil {
			return nil
		}
		select {
		case <-pg.done:
			log, _ := os.ReadFile(logPath)
			if strings.Contains(string(log), "Address already in use") {
				return fmt.Errorf("%w: %d", errPortTaken, pg.Port)
			}
			return fmt.Errorf("postgres exited: %v\n%s", pg.waitErr, tail(log, 2000))
		case <-ctx.Done():
			_ = pg.cmd.Process.Kill()
			<-pg.done
			return fmt.Errorf("postgres: not ready: %w (last: %v)", ctx.Err(), err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
