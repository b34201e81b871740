package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/internal/store"
)

// A race is an invariant the contract promises under concurrency, checked
// with concurrent writers: setup prepares a new database; work is what
// writer w of n does on its handle, reporting what it observed as lines
// (they travel from other processes as JSON); check checks the invariant
// against the database and every writer's report.
type race struct {
	name  string
	setup func(t testing.TB, st store.Store)
	work  func(ctx context.Context, st store.Store, w, n int) ([]string, error)
	check func(t testing.TB, st store.Store, reports [][]string)
}

// races are the invariants, each run by every setting.
var races = []race{
	consumeRace,
	bindRace,
	revokeCertificateRace,
	disableRace,
	insertUnderRevokedRace,
	insertBoundRace,
	cascadeRace,
	auditRace,
	checkpointRace,
	firstSeenRace,
}

// A setting is how the writers share the database.
type setting struct {
	name      string
	handles   int // stores opened on the database, each with its own pool
	processes int // if > 0: the handles are in processes of their own
	perHandle int // writers on each handle
}

var settings = []setting{
	{"goroutines", 1, 0, 16},
	{"handles", 3, 0, 6},
	{"processes", 3, 3, 4},
}

// races runs every race in every setting.
func (h *harness) races(t *testing.T) {
	for _, r := range races {
		t.Run(r.name, func(t *testing.T) {
			for _, s := range settings {
				t.Run(s.name, func(t *testing.T) { h.race(t, r, s) })
			}
		})
	}
}

// raceTimeout bounds a race's writers.
const raceTimeout = 2 * time.Minute

func (h *harness) race(t *testing.T, r race, s setting) {
	st, dsn := h.open(t)
	r.setup(t, st)
	ctx, cancel := context.WithTimeout(context.Background(), raceTimeout)
	defer cancel()
	n := s.handles * s.perHandle
	var reports [][]string
	var err error
	if s.processes > 0 {
		reports, err = h.runProcesses(ctx, t, r, dsn, s)
	} else {
		stores := []store.Store{st}
		for len(stores) < s.handles {
			stores = append(stores, h.reopen(t, dsn))
		}
		reports, err = runWriters(ctx, r, stores, 0, n, n)
	}
	if err != nil {
		t.Fatal(err)
	}
	r.check(t, st, reports)
}

// runWriters runs writers [first, first+count) of n, spread over stores,
// from one start, and returns their reports.
func runWriters(ctx context.Context, r race, stores []store.Store, first, count, n int) ([][]string, error) {
	reports := make([][]string, count)
	errs := make([]error, count)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range count {
		st := stores[i%len(stores)]
		wg.Go(func() {
			<-start
			reports[i], errs[i] = r.work(ctx, st, first+i, n)
			if errs[i] != nil {
				errs[i] = fmt.Errorf("writer %d: %w", first+i, errs[i])
			}
		})
	}
	close(start)
	wg.Wait()
	return reports, errors.Join(errs...)
}

// Other processes: the suite runs its own test binary again, with only
// the test that called Run (runPattern), and workerEnv set to a
// workerSpec: Run then opens its handle, runs its writers and writes their
// reports to Out. A writer process that fails fails the race with its
// output.

// workerEnv names the environment variable that makes Run a writer.
const workerEnv = "SIGIL_STORETEST_WORKER"

// workerSpec is what one writer process does.
type workerSpec struct {
	DSN    string
	Race   string
	First  int
	Count  int
	N      int
	Out    string // file for the reports, as JSON
	Writer int    // the process's number, for messages
}

// runProcesses runs the writers of s in processes of their own, and
// returns their reports in writer order.
func (h *harness) runProcesses(ctx context.Context, t *testing.T, r race, dsn string, s setting) ([][]string, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("storetest: test binary: %w", err)
	}
	run := runPattern(h.t.Name())
	n := s.handles * s.perHandle
	cmds := make([]*exec.Cmd, s.processes)
	outs := make([]*strings.Builder, s.processes)
	files := make([]string, s.processes)
	for p := range s.processes {
		files[p] = filepath.Join(t.TempDir(), fmt.Sprintf("writer-%d.json", p))
		spec, _ := json.Marshal(workerSpec{DSN: dsn, Race: r.name, First: p * s.perHandle, Count: s.perHandle, N: n, Out: files[p], Writer: p})
		cmd := exec.CommandContext(ctx, exe, "-test.run="+run, "-test.count=1", "-test.timeout="+raceTimeout.String())
		cmd.Env = append(os.Environ(), workerEnv+"="+string(spec))
		outs[p] = &strings.Builder{}
		cmd.Stdout, cmd.Stderr = outs[p], outs[p]
		if err := cmd.Start(); err != nil {
			return nil, fmt.Errorf("storetest: start writer process %d: %w", p, err)
		}
		cmds[p] = cmd
	}
	var errs []error
	for p, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			errs = append(errs, fmt.Errorf("writer process %d: %w\n%s", p, err, outs[p]))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	var reports [][]string
	for p, f := range files {
		var rs [][]string
		b, err := os.ReadFile(f)
		if err == nil {
			err = json.Unmarshal(b, &rs)
		}
		if err != nil || len(rs) != s.perHandle {
			return nil, fmt.Errorf("writer process %d: reports: %d, %v\n%s", p, len(rs), err, outs[p])
		}
		reports = append(reports, rs...)
	}
	return reports, nil
}

// runPattern is the -test.run pattern that runs the test name and no
// other: the one that called Run.
func runPattern(name string) string {
	parts := strings.Split(name, "/")
	for i, p := range parts {
		parts[i] = "^" + regexp.QuoteMeta(p) + "$"
	}
	return strings.Join(parts, "/")
}

// worker is Run in a writer process.
func (h *harness) worker(t *testing.T, specJSON string) {
	var spec workerSpec
	if err := json.Unmarshal([]byte(specJSON), &spec); err != nil {
		t.Fatalf("%s: %v", workerEnv, err)
	}
	var r *race
	for i := range races {
		if races[i].name == spec.Race {
			r = &races[i]
		}
	}
	if r == nil {
		t.Fatalf("writer process %d: no race %q", spec.Writer, spec.Race)
	}
	ctx, cancel := context.WithTimeout(context.Background(), raceTimeout)
	defer cancel()
	st, err := h.b.Open(ctx, spec.DSN)
	if err != nil {
		t.Fatalf("writer process %d: open: %v", spec.Writer, err)
	}
	defer st.Close()
	reports, err := runWriters(ctx, *r, []store.Store{st}, spec.First, spec.Count, spec.N)
	if err != nil {
		t.Fatalf("writer process %d: %v", spec.Writer, err)
	}
	b, _ := json.Marshal(reports)
	if err := os.WriteFile(spec.Out, b, 0o600); err != nil {
		t.Fatalf("writer process %d: %v", spec.Writer, err)
	}
}

// waitFor polls cond, a read of the database, until it holds: writers in
// other processes have no other way to tell each other how far they got.
func waitFor(ctx context.Context, what string, cond func() (bool, error)) error {
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		ok, err := cond()
		if ok || err != nil {
			return err
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		}
	}
}
