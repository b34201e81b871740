package main_test

import (
	"cmp"
	"context"
	"crypto"
	"crypto/sha256"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	_ "github.com/mattn/go-sqlite3"

	"github.com/sigil-dev/sigil/client"
)

// exchangeConcurrency is how many goroutines drive the exchanges, and the
// crypto floor, over one HTTP/2 mTLS connection kept alive.
const exchangeConcurrency = 16

// The benchmark's CPUs, as taskset lists them: sigild, and the crypto
// floor it is compared with, get serverCPU; the load generator clientCPU.
const (
	serverCPU = "1"
	clientCPU = "0"
)

// exchanges per measurement; SIGIL_BENCH_EXCHANGES overrides it (longer
// runs, for profiling sigild with SIGILD_FLAGS="--pprof 127.0.0.1:6060").
var exchanges = func() int {
	if n, err := strconv.Atoi(os.Getenv("SIGIL_BENCH_EXCHANGES")); err == nil && n > 0 {
		return n
	}
	return 3000
}()

// BenchmarkExchange runs real sigild (SoftHSM, audit log on) and measures
// token exchange over mTLS keep-alive against the crypto floor of one
// exchange measured in the same run: verifying the subject token plus one
// HSM signature, at the same concurrency. Its sub-benchmarks are the
// deployments, compared in one run:
//
//	sqlite            one sigild, the embedded default
//	postgres          one sigild on PostgreSQL (a private cluster)
//	2-replicas        two sigild replicas on PostgreSQL behind HAProxy,
//	                  the HSM shared through p11-kit server
//
// Each does a fixed amount of work whatever b.N is (the setup takes
// seconds); read the custom metrics, not ns/op.
//
// sigild and the floor get the same CPU budget, one CPU: sigild (all its
// threads, and so the GOMAXPROCS its runtime derives from its affinity;
// every replica) is pinned to CPU 1 once it is up; the floor runs first, in
// this process pinned to CPU 1 with GOMAXPROCS 1, while sigild idles. Then
// this process, the load generator, is pinned to CPU 0, where it takes
// nothing from sigild, and drives 2 s of exchanges to warm sigild up
// (statements prepared, caches filled, and the new GOMAXPROCS, which Go
// rereads at most once a second, in effect) before the measured runs.
// SoftHSM runs inside sigild (behind p11-kit server with replicas), and
// inside this process for the floor. PostgreSQL and HAProxy are not pinned:
// they take CPU from either side. On a 2-CPU machine two replicas share
// sigild's one CPU: 2-replicas measures what the balancer and the shared
// database cost, not scale-out. The load is two workloads on two TPMs, two
// connections (round robin: one to each replica), 8 goroutines each. The
// metrics:
//
//	exchanges/s, p50-ms, p99-ms  exchanges at full load: 16 goroutines,
//	                             each sending its next request when the
//	                             last one is answered
//	floor-ops/s                  the crypto floor, 16 goroutines, one CPU
//	of-floor                     exchanges/s over floor-ops/s
//	half-load-p99-ms             p99 of exchanges started at a steady half
//	                             of the exchanges/s measured
//	floor-half-p99-ms            its baseline: the p99 of the latency floor
//	                             (bench_latfloor_test.go: HTTP/2, one HSM
//	                             signature, a durable SQLite record) driven
//	                             the same way on sigild's CPU; one sigild
//	                             only
//	sigild-cpu                   sigild's CPU time (all replicas) in the
//	                             full-load run over its duration: below 1,
//	                             sigild waited (for fsync, the database,
//	                             the client) or, on a busy machine, CPU 1
//	                             was shared
//	sigild-cpu-us/op             sigild's CPU time per exchange at full load
//	sigild-sys-us/op             the part of it spent in the kernel
//	                             (system calls: fsync, socket writes…)
//	commits/op                   SQLite transactions committed per
//	                             exchange at full load (one fsync each;
//	                             below 1, exchanges shared a COMMIT)
//	postgres-cpu-us/op           PostgreSQL's (every server process's) CPU
//	                             time per exchange at full load
//	floor-cpu-us/op              this process's CPU time per floor operation
//	of-floor-cpu                 floor-cpu-us/op over sigild-cpu-us/op:
//	                             of-floor in CPU time, which the machine's
//	                             other load disturbs less than rates
//	commit-cpu-us                this process's CPU time per durable
//	                             SQLite commit of one small row (fsync
//	                             included), pinned like sigild: multiplied
//	                             by commits/op, the COMMITs' share of
//	                             sigild-cpu-us/op
//	sigild-rss-MB                sigild's peak resident set size (VmHWM;
//	                             the largest replica's), read after the
//	                             half-load run
//
// Other processes share the CPUs too: compare several runs on one machine.
func BenchmarkExchange(b *testing.B) {
	if runtime.NumCPU() < 2 {
		b.Fatalf("BenchmarkExchange needs 2 CPUs (sigild on one, the client on the other); this machine has %d", runtime.NumCPU())
	}
	for _, d := range []struct{ name, store, replicas string }{
		{"sqlite", "sqlite", "1"},
		{"postgres", "postgres", "1"},
		{"2-replicas", "postgres", "2"},
	} {
		b.Run(d.name, func(b *testing.B) {
			benchmarkExchange(b, startStackArgs(b, "--tpms", "2", "--store", d.store, "--replicas", d.replicas))
		})
	}
}

func benchmarkExchange(b *testing.B, s *stack) {
	ctx := context.Background()
	var loads []func() error
	for i, n := range []string{"frontend", "orders"} {
		if out, code := s.enroll(i, "spiffe://sigil.test/workload/"+n, filepath.Join(s.dir, n)); code != 0 {
			b.Fatalf("enroll %s: %s", n, out)
		}
		user := s.userToken(b, n, "orders:read")
		w, err := client.Open(ctx, filepath.Join(s.dir, n))
		if err != nil {
			b.Fatal(err)
		}
		defer w.Close()
		req := client.TokenRequest{SubjectToken: user, Audience: []string{"spiffe://sigil.test/workload/payments"}, Scope: []string{"orders:read"}}
		exchange := func() error { _, err := w.Token(ctx, req); return err }
		if err := exchange(); err != nil { // the TLS handshake, signed by the TPM
			b.Fatal(err)
		}
		loads = append(loads, exchange)
	}
	var next atomic.Uint64
	exchange := func() error { return loads[next.Add(1)%uint64(len(loads))]() }

	sigilds, self := sigildPIDs(b, s), os.Getpid()
	for _, pid := range sigilds {
		pin(b, pid, serverCPU)
	}
	defer pin(b, self, affinity(b, fmt.Sprintf("/proc/%d/status", self)))
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	pin(b, self, serverCPU)
	floor := cryptoFloor(b, s, s.userToken(b, "frontend", "orders:read"))
	b.ResetTimer()
	floorCPU := cpuTime(b, self)
	base := drive(b, exchangeConcurrency, exchanges, 0, floor)
	floorCPU = cpuTime(b, self) - floorCPU
	commit := durableCommit(b)
	commitCPU := cpuTime(b, self)
	drive(b, 1, commitOps, 0, commit)
	commitCPU = cpuTime(b, self) - commitCPU
	b.StopTimer()
	pin(b, self, clientCPU)
	warm(b, exchangeConcurrency, 2*time.Second, exchange)

	b.StartTimer()
	commits, sqlite := sqliteCommits(b, s) // outside the CPU times: a handshake
	sigildCPU, sigildSys, pgCPU := cpuTimes(b, sigilds), sysTimes(b, sigilds), postgresCPU(b, s)
	full := drive(b, exchangeConcurrency, exchanges, 0, exchange)
	sigildCPU, sigildSys, pgCPU = cpuTimes(b, sigilds)-sigildCPU, sysTimes(b, sigilds)-sigildSys, postgresCPU(b, s)-pgCPU
	if sqlite {
		after, _ := sqliteCommits(b, s)
		b.ReportMetric((after-commits)/float64(exchanges), "commits/op")
	}
	stopTrace := traceSigild(b)
	halfEvery := time.Duration(float64(time.Second) / (full.rate / 2))
	half := drive(b, exchangeConcurrency, exchanges/2, halfEvery, exchange)
	b.StopTimer()
	stopTrace()
	if len(sigilds) == 1 { // with replicas, the load goes through HAProxy
		floor := latencyFloor(b, s, exchanges/2, halfEvery, s.userToken(b, "frontend", "orders:read"))
		b.ReportMetric(ms(floor.p99), "floor-half-p99-ms")
	}
	dumpLatencies(b, "full", full)
	dumpLatencies(b, "half", half)
	b.ReportMetric(full.rate, "exchanges/s")
	b.ReportMetric(ms(full.p50), "p50-ms")
	b.ReportMetric(ms(full.p99), "p99-ms")
	b.ReportMetric(base.rate, "floor-ops/s")
	b.ReportMetric(full.rate/base.rate, "of-floor")
	b.ReportMetric(ms(half.p99), "half-load-p99-ms")
	b.ReportMetric(sigildCPU.Seconds()/full.elapsed.Seconds(), "sigild-cpu")
	b.ReportMetric(us(sigildCPU)/float64(exchanges), "sigild-cpu-us/op")
	b.ReportMetric(us(sigildSys)/float64(exchanges), "sigild-sys-us/op")
	b.ReportMetric(us(pgCPU)/float64(exchanges), "postgres-cpu-us/op")
	b.ReportMetric(us(floorCPU)/float64(exchanges), "floor-cpu-us/op")
	b.ReportMetric(floorCPU.Seconds()/sigildCPU.Seconds(), "of-floor-cpu")
	b.ReportMetric(us(commitCPU)/commitOps, "commit-cpu-us")
	b.ReportMetric(peakRSS(b, sigilds)/(1<<20), "sigild-rss-MB")
}

// peakRSS is the largest peak resident set size (VmHWM) of processes pids,
// in bytes: after the full-load run, that run's peak, unless starting up
// took more.
func peakRSS(b *testing.B, pids []int) float64 {
	b.Helper()
	var peak float64
	for _, pid := range pids {
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			b.Fatal(err)
		}
		_, rest, ok := strings.Cut(string(raw), "\nVmHWM:")
		line, _, _ := strings.Cut(rest, "\n")
		kB, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(line), " kB"), 64)
		if !ok || err != nil {
			b.Fatalf("/proc/%d/status: no VmHWM in kB: %q", pid, line)
		}
		peak = max(peak, kB*1024)
	}
	return peak
}

// sigildPIDs are the stack's sigild processes: one, or every replica's.
func sigildPIDs(b *testing.B, s *stack) []int {
	b.Helper()
	files, _ := filepath.Glob(filepath.Join(s.dir, "replica*", "sigild.pid"))
	if len(files) == 0 {
		files = []string{filepath.Join(s.dir, "sigild.pid")}
	}
	var pids []int
	for _, f := range files {
		pids = append(pids, readPID(b, f))
	}
	return pids
}

// cpuTimes is the CPU time processes pids have used, in all.
func cpuTimes(b *testing.B, pids []int) time.Duration {
	b.Helper()
	var sum time.Duration
	for _, pid := range pids {
		sum += cpuTime(b, pid)
	}
	return sum
}

// sysTimes is the system CPU time processes pids have used, in all.
func sysTimes(b *testing.B, pids []int) time.Duration {
	b.Helper()
	var sum time.Duration
	for _, pid := range pids {
		_, sys := userSys(b, pid)
		sum += sys
	}
	return sum
}

// sqliteCommits is how many transactions sigild's SQLite store has
// committed, alone and batched, from its /metrics; ok is false without
// SQLite.
func sqliteCommits(b *testing.B, s *stack) (commits float64, ok bool) {
	b.Helper()
	body := stackGet(b, s, s.env["SIGIL_SERVER"]+"/metrics")
	for _, line := range strings.Split(string(body), "\n") {
		if series, v, found := strings.Cut(line, " "); found && strings.HasPrefix(series, "sigil_sqlite_commits_total{") {
			n, err := strconv.ParseFloat(v, 64)
			if err != nil {
				b.Fatalf("/metrics: %q: %v", line, err)
			}
			commits, ok = commits+n, true
		}
	}
	return commits, ok
}

// postgresCPU is the CPU time the stack's PostgreSQL server has used: the
// postmaster, its reaped children, and its running children (the
// connections' backends, the writers). 0 without PostgreSQL.
func postgresCPU(b *testing.B, s *stack) time.Duration {
	b.Helper()
	raw, err := os.ReadFile(filepath.Join(s.dir, "pg", "data", "postmaster.pid"))
	if errors.Is(err, os.ErrNotExist) {
		return 0
	}
	if err != nil {
		b.Fatal(err)
	}
	postmaster, err := strconv.Atoi(strings.SplitN(string(raw), "\n", 2)[0])
	if err != nil {
		b.Fatalf("postmaster.pid: %v", err)
	}
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	var sum time.Duration
	for _, st := range stats {
		f := statFields(st)
		if f == nil {
			continue // exited meanwhile
		}
		pid, _ := strconv.Atoi(strings.Split(st, "/")[2])
		ppid, _ := strconv.Atoi(f[1]) // field 4
		if pid != postmaster && ppid != postmaster {
			continue
		}
		ticks := f[11:13] // utime, stime: fields 14, 15
		if pid == postmaster {
			ticks = f[11:15] // and cutime, cstime: the reaped children's
		}
		for _, t := range ticks {
			n, _ := strconv.ParseInt(t, 10, 64)
			sum += time.Duration(n) * time.Second / clockTicks
		}
	}
	return sum
}

// commitOps is how many transactions durableCommit's baseline commits.
const commitOps = 1000

// durableCommit is one SQLite transaction of one small row, committed as
// sigild's store commits (WAL, synchronous=FULL: an fsync each), alone: what
// a COMMIT costs before the rows in it, which exchanges batched together
// share (commits/op).
func durableCommit(b *testing.B) func() error {
	b.Helper()
	db, err := openDurableSQLite(filepath.Join(b.TempDir(), "commit.db"), `CREATE TABLE t (v BLOB)`)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	return func() error {
		_, err := db.Exec(`INSERT INTO t (v) VALUES (randomblob(200))`)
		return err
	}
}

// openDurableSQLite creates the SQLite database path, committed as
// sigild's store commits (WAL, synchronous=FULL), with one connection, and
// runs schema in it.
func openDurableSQLite(path, schema string) (*sql.DB, error) {
	db, err := sql.Open("sqlite3", "file:"+path+"?_journal_mode=WAL&_synchronous=FULL")
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	if _, err := db.Exec(schema); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// statFields are the fields of a /proc/PID/stat file from field 3, the
// state, on; nil if the process is gone.
func statFields(path string) []string {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	stat := string(raw)
	return strings.Fields(stat[strings.LastIndexByte(stat, ')')+2:])
}

// cryptoFloor is one exchange's unavoidable cryptography: verify the
// subject token's ES256 signature with the IdP's key, and sign once with
// the HSM token key.
func cryptoFloor(b *testing.B, s *stack, token string) func() error {
	b.Helper()
	var set jose.JSONWebKeySet
	raw, err := os.ReadFile(filepath.Join(s.env["SIGIL_IDP_DIR"], "idp-jwks.json"))
	if err == nil {
		err = json.Unmarshal(raw, &set)
	}
	if err != nil {
		b.Fatal(err)
	}
	h := openStackHSM(b, s)
	b.Cleanup(func() { h.Close() })
	key, err := h.Find(context.Background(), "sigil-token")
	if err != nil {
		b.Fatal(err)
	}
	digest := sha256.Sum256([]byte("floor"))
	return func() error {
		jws, err := jose.ParseSigned(token, []jose.SignatureAlgorithm{jose.ES256})
		if err != nil {
			return err
		}
		if _, err := jws.Verify(set.Keys[0].Key); err != nil {
			return err
		}
		_, err = key.Sign(nil, digest[:], crypto.SHA256)
		return err
	}
}

// pin restricts every thread of process pid to cpus (a taskset list);
// threads started later inherit it. It checks each thread, as one started
// while taskset ran may have escaped, and pins again.
func pin(b *testing.B, pid int, cpus string) {
	b.Helper()
	for range 5 {
		out, err := exec.Command("taskset", "-a", "-p", "-c", cpus, strconv.Itoa(pid)).CombinedOutput()
		if err != nil {
			b.Fatalf("taskset: %v\n%s", err, out)
		}
		if pinned(b, pid, cpus) {
			return
		}
	}
	b.Fatalf("could not pin process %d to CPUs %s", pid, cpus)
}

// pinned reports whether every thread of pid may run on cpus only.
func pinned(b *testing.B, pid int, cpus string) bool {
	b.Helper()
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
	if err != nil || len(tasks) == 0 {
		b.Fatalf("threads of process %d: %v", pid, err)
	}
	for _, t := range tasks {
		if affinity(b, t) != cpus {
			return false
		}
	}
	return true
}

// affinity reads the CPUs a process or thread may run on from its status
// file, "" if it is gone.
func affinity(b *testing.B, status string) string {
	b.Helper()
	raw, err := os.ReadFile(status)
	if err != nil {
		return "" // exited meanwhile
	}
	for line := range strings.Lines(string(raw)) {
		if cpus, ok := strings.CutPrefix(line, "Cpus_allowed_list:"); ok {
			return strings.TrimSpace(cpus)
		}
	}
	b.Fatalf("%s: no Cpus_allowed_list", status)
	return ""
}

// cpuTime is the user and system CPU time process pid has used.
func cpuTime(b *testing.B, pid int) time.Duration {
	b.Helper()
	user, sys := userSys(b, pid)
	return user + sys
}

// userSys is the user and the system CPU time process pid has used.
func userSys(b *testing.B, pid int) (user, sys time.Duration) {
	b.Helper()
	f := statFields(fmt.Sprintf("/proc/%d/stat", pid))
	if f == nil {
		b.Fatalf("process %d is gone", pid)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64) // field 14
	stime, err2 := strconv.ParseInt(f[12], 10, 64) // field 15
	if err1 != nil || err2 != nil {
		b.Fatalf("/proc/%d/stat: %q", pid, f)
	}
	return time.Duration(utime) * time.Second / clockTicks, time.Duration(stime) * time.Second / clockTicks
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat times: 100 on every
// Linux architecture Go supports.
const clockTicks = 100

type load struct {
	rate     float64
	elapsed  time.Duration
	p50, p99 time.Duration
	samples  []sample // every operation, in the order they ended
}

// sample is one operation of drive: when it started and how long it took.
type sample struct {
	start time.Time
	took  time.Duration
}

// warm runs op from g goroutines for d.
func warm(b *testing.B, g int, d time.Duration, op func() error) {
	b.Helper()
	end := time.Now().Add(d)
	var wg sync.WaitGroup
	for range g {
		wg.Go(func() {
			for time.Now().Before(end) {
				if err := op(); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// drive runs op n times from g goroutines; with every > 0, starts are paced
// to one per every.
func drive(b *testing.B, g, n int, every time.Duration, op func() error) load {
	b.Helper()
	jobs := make(chan struct{})
	lat := make([]time.Duration, 0, n)
	samples := make([]sample, 0, n)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range g {
		wg.Go(func() {
			for range jobs {
				start := time.Now()
				if err := op(); err != nil {
					b.Error(err)
				}
				took := time.Since(start)
				mu.Lock()
				lat = append(lat, took)
				samples = append(samples, sample{start, took})
				mu.Unlock()
			}
		})
	}
	began := time.Now()
	for i := 0; i < n; i++ {
		if every > 0 {
			time.Sleep(time.Until(began.Add(time.Duration(i) * every)))
		}
		jobs <- struct{}{}
	}
	close(jobs)
	wg.Wait()
	elapsed := time.Since(began)
	slices.Sort(lat)
	return load{rate: float64(n) / elapsed.Seconds(), elapsed: elapsed, p50: lat[len(lat)/2], p99: lat[len(lat)*99/100], samples: samples}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// Tail-latency diagnostics, off unless asked for. SIGIL_BENCH_LATENCIES=DIR
// writes every operation of a measured run (DIR/NAME.tsv: start in Unix
// nanoseconds, latency in nanoseconds); SIGIL_BENCH_TRACE=HOST:PORT,FILE
// (sigild started with SIGILD_FLAGS="--pprof HOST:PORT") saves sigild's
// runtime trace of the half-load run's first SIGIL_BENCH_TRACE_SECONDS
// (default 5) to FILE, and FILE.start its request's Unix nanoseconds;
// `go run ./testenv/cmd/tracebreak FILE` says where those exchanges spent
// their wall time. Neither changes what the benchmark reports.

// dumpLatencies writes l's samples to SIGIL_BENCH_LATENCIES/name.tsv.
func dumpLatencies(b *testing.B, name string, l load) {
	b.Helper()
	dir := os.Getenv("SIGIL_BENCH_LATENCIES")
	if dir == "" {
		return
	}
	var sb strings.Builder
	for _, s := range l.samples {
		fmt.Fprintf(&sb, "%d\t%d\n", s.start.UnixNano(), s.took.Nanoseconds())
	}
	if err := os.WriteFile(filepath.Join(dir, name+".tsv"), []byte(sb.String()), 0o644); err != nil {
		b.Fatal(err)
	}
}

// traceSigild starts fetching sigild's runtime trace as SIGIL_BENCH_TRACE
// says; the function returned waits for it to be saved.
func traceSigild(b *testing.B) func() {
	b.Helper()
	addr, file, ok := strings.Cut(os.Getenv("SIGIL_BENCH_TRACE"), ",")
	if !ok {
		return func() {}
	}
	secs := cmp.Or(os.Getenv("SIGIL_BENCH_TRACE_SECONDS"), "5")
	done := make(chan struct{})
	began := time.Now()
	go func() {
		defer close(done)
		resp, err := http.Get("http://" + addr + "/debug/pprof/trace?seconds=" + secs)
		if err != nil {
			b.Error(err)
			return
		}
		defer resp.Body.Close()
		data, err := io.ReadAll(resp.Body)
		if err != nil {
			b.Error(err)
			return
		}
		if err := errors.Join(os.WriteFile(file, data, 0o644), os.WriteFile(file+".start", fmt.Appendf(nil, "%d\n", began.UnixNano()), 0o644)); err != nil {
			b.Error(err)
		}
	}()
	return func() { <-done }
}
