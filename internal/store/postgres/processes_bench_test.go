package postgres

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/internal/store/sqlite"
	"github.com/sigil-dev/sigil/internal/store/storetest"
	"github.com/sigil-dev/sigil/testenv"
)

// appendWorkerEnv makes the test binary an audit writer process (see
// appendWorker) instead of running tests: TestMain checks it.
const appendWorkerEnv = "SIGIL_BENCH_APPEND_WORKER"

// appendSpec is what one writer process does: open the store at DSN
// (postgres://… or a SQLite file path) and append Count entries named
// Prefix-i, each in a Tx of its own.
type appendSpec struct {
	DSN    string
	Prefix string
	Count  int
}

// appendsPerProcess is how many entries each writer process appends.
const appendsPerProcess = 300

// BenchmarkAuditAppendProcesses measures the audit log's append rate with
// writers in several processes, as replicas are: each process opens a
// store of its own and appends entries, one Tx each, to one log on
// PostgreSQL (a private cluster, fsync on) and on SQLite (one file) in the
// same run. The clock runs from when every process has its store open to
// when the last one is done. The log is then checked dense: its size is
// every entry appended. Metrics: pg-appends/s, sqlite-appends/s and
// pg/sqlite, for 1 and 4 processes. It does a fixed amount of work
// whatever b.N is; read the custom metrics.
func BenchmarkAuditAppendProcesses(b *testing.B) {
	pg := testenv.StartPostgres(b)
	for _, procs := range []int{1, 4} {
		b.Run(fmt.Sprintf("processes=%d", procs), func(b *testing.B) {
			pgRate := appendRate(b, pg.NewDatabase(b), procs, func(ctx context.Context, dsn string) (store.Store, error) { return Open(ctx, dsn) })
			lite := filepath.Join(b.TempDir(), "sigil.db")
			liteRate := appendRate(b, lite, procs, func(ctx context.Context, dsn string) (store.Store, error) { return sqlite.Open(ctx, dsn) })
			b.ReportMetric(pgRate, "pg-appends/s")
			b.ReportMetric(liteRate, "sqlite-appends/s")
			b.ReportMetric(pgRate/liteRate, "pg/sqlite")
		})
	}
}

// appendRate runs procs writer processes on dsn and returns the entries
// they appended per second, after checking the log holds all of them.
func appendRate(b *testing.B, dsn string, procs int, open func(context.Context, string) (store.Store, error)) float64 {
	b.Helper()
	ctx := context.Background()
	// Open once first: migrations run before the clock, not in a writer.
	st, err := open(ctx, dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	type writer struct {
		cmd   *osexec.Cmd
		in    io.WriteCloser
		out   *bufio.Reader
		trace strings.Builder
	}
	ws := make([]*writer, procs)
	for p := range ws {
		spec, _ := json.Marshal(appendSpec{DSN: dsn, Prefix: fmt.Sprintf("w%d", p), Count: appendsPerProcess})
		w := &writer{cmd: osexec.Command(exe, "-test.run=^$")}
		w.cmd.Env = append(os.Environ(), appendWorkerEnv+"="+string(spec))
		w.cmd.Stderr = &w.trace
		if w.in, err = w.cmd.StdinPipe(); err != nil {
			b.Fatal(err)
		}
		stdout, err := w.cmd.StdoutPipe()
		if err != nil {
			b.Fatal(err)
		}
		w.out = bufio.NewReader(stdout)
		if err := w.cmd.Start(); err != nil {
			b.Fatal(err)
		}
		ws[p] = w
	}
	expect := func(w *writer, want string) {
		if line, err := w.out.ReadString('\n'); strings.TrimSpace(line) != want {
			b.Fatalf("writer process: %q (%v), want %q\n%s", line, err, want, w.trace.String())
		}
	}
	for _, w := range ws {
		expect(w, "ready")
	}
	began := time.Now()
	for _, w := range ws {
		io.WriteString(w.in, "go\n")
	}
	for _, w := range ws {
		expect(w, "done")
	}
	elapsed := time.Since(began)
	for _, w := range ws {
		w.in.Close()
		if err := w.cmd.Wait(); err != nil {
			b.Fatalf("writer process: %v\n%s", err, w.trace.String())
		}
	}
	size, err := st.AuditSize(ctx)
	if err != nil || size != uint64(procs*appendsPerProcess) {
		b.Fatalf("audit log size %d (%v) after %d processes appended %d each", size, err, procs, appendsPerProcess)
	}
	return float64(size) / elapsed.Seconds()
}

// appendWorker is the test binary as a writer process: it opens the store,
// says "ready", appends on "go", and says "done".
func appendWorker(specJSON string) error {
	var spec appendSpec
	if err := json.Unmarshal([]byte(specJSON), &spec); err != nil {
		return err
	}
	ctx := context.Background()
	var st store.Store
	var err error
	if strings.HasPrefix(spec.DSN, "postgres://") {
		st, err = Open(ctx, spec.DSN)
	} else {
		st, err = sqlite.Open(ctx, spec.DSN)
	}
	if err != nil {
		return err
	}
	defer st.Close()
	fmt.Println("ready")
	if line, err := bufio.NewReader(os.Stdin).ReadString('\n'); strings.TrimSpace(line) != "go" {
		return fmt.Errorf("want go, got %q (%v)", line, err)
	}
	for i := range spec.Count {
		name := fmt.Sprintf("%s-%d", spec.Prefix, i)
		if err := st.Tx(ctx, func(tx store.Tx) error {
			_, err := tx.AppendAudit(ctx, storetest.Entry(name, "jti:"+name))
			return err
		}); err != nil {
			return fmt.Errorf("append %s: %w", name, err)
		}
	}
	fmt.Println("done")
	return nil
}
