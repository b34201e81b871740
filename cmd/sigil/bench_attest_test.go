package main_test

import (
	"context"
	"crypto"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/client"
)

// attestHosts is how many swtpm hosts renew at once in BenchmarkRenewal,
// each with its own workload, one goroutine each.
const attestHosts = 4

// renewals per measurement; SIGIL_BENCH_RENEWALS overrides it.
var renewals = envCount("SIGIL_BENCH_RENEWALS", 400)

// enrollments per measurement; SIGIL_BENCH_ENROLLMENTS overrides it.
var enrollments = envCount("SIGIL_BENCH_ENROLLMENTS", 24)

func envCount(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

// BenchmarkRenewal runs real sigild (SQLite, SoftHSM, audit log on) and
// attestHosts swtpm hosts, each with an enrolled workload, and measures
// certificate renewal as `sigil renew` does it: over HTTPS with mTLS, a
// fresh nonce, a fresh quote from the host's TPM with the AK pinned at
// enrollment, a CSR by the TPM key, the certificate issued by the HSM and
// recorded with its evidence and audit entry. Each renewal's new
// certificate makes the next one open a new mTLS connection. As in
// BenchmarkExchange, sigild is pinned to one CPU and the load (this
// process, and every swtpm) to the other; the HSM signature's own cost is
// measured in the same run, in this process pinned to sigild's CPU with
// GOMAXPROCS 1, with the issuing CA's key. Metrics:
//
//	renewals/s, p50-ms, p99-ms  attestHosts hosts renewing back to back
//	sigild-cpu-us/op            sigild's CPU time per renewal
//	sigild-cpu                  sigild's CPU time over the run's duration
//	hsm-sign-cpu-us/op          this process's CPU time per HSM signature
//	of-hsm-sign                 sigild-cpu-us/op over hsm-sign-cpu-us/op
//	floor-cpu-us/op             the renewal's floor (renewalFloor): this
//	                            process's CPU per renewal for the work no
//	                            implementation can skip, pinned as above
//	floor-tls-cpu-us/op         the part of it that is the TLS handshake
//	floor-mlkem-cpu-us/op       what the hybrid X25519MLKEM768 key exchange
//	                            adds to it over X25519 alone
//	of-floor                    sigild-cpu-us/op over floor-cpu-us/op
//
// It runs on each store: sqlite, and postgres (one replica, local database).
func BenchmarkRenewal(b *testing.B) {
	requireCPUs(b)
	for _, st := range []string{"sqlite", "postgres"} {
		b.Run(st, func(b *testing.B) { benchmarkRenewal(b, st) })
	}
}

func benchmarkRenewal(b *testing.B, store string) {
	s := startStackArgs(b, "--tpms", strconv.Itoa(attestHosts), "--store", store)
	ctx := context.Background()
	pool := make(chan *client.Workload, attestHosts)
	for i := range attestHosts {
		dir := filepath.Join(s.dir, fmt.Sprintf("host%d", i))
		if out, code := s.enroll(i, fmt.Sprintf("spiffe://sigil.test/workload/host%d", i), dir); code != 0 {
			b.Fatalf("enroll host %d: %s", i, out)
		}
		w, err := client.Open(ctx, dir)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { w.Close() })
		pool <- w
	}
	renew := func() error {
		w := <-pool
		defer func() { pool <- w }()
		_, err := w.Renew(ctx)
		return err
	}
	sigilds, self := sigildPIDs(b, s), os.Getpid()
	for _, pid := range sigilds {
		pin(b, pid, serverCPU)
	}
	defer pin(b, self, affinity(b, fmt.Sprintf("/proc/%d/status", self)))
	signCPU := hsmSignCPU(b, s, "sigil-issuer")
	for _, pid := range swtpmPIDs(b, s) {
		pin(b, pid, clientCPU)
	}
	pin(b, self, clientCPU)
	warm(b, attestHosts, 2*time.Second, renew)
	floor := renewalFloor(b, s, loggedRenewal(b, s))
	pin(b, self, clientCPU)

	b.ResetTimer()
	cpu := cpuTimes(b, sigilds)
	full := drive(b, attestHosts, renewals, 0, renew)
	cpu = cpuTimes(b, sigilds) - cpu
	b.StopTimer()
	perOp := us(cpu) / float64(renewals)
	b.ReportMetric(full.rate, "renewals/s")
	b.ReportMetric(ms(full.p50), "p50-ms")
	b.ReportMetric(ms(full.p99), "p99-ms")
	b.ReportMetric(cpu.Seconds()/full.elapsed.Seconds(), "sigild-cpu")
	b.ReportMetric(perOp, "sigild-cpu-us/op")
	b.ReportMetric(signCPU, "hsm-sign-cpu-us/op")
	b.ReportMetric(perOp/signCPU, "of-hsm-sign")
	b.ReportMetric(floor.total(), "floor-cpu-us/op")
	b.ReportMetric(floor.tls, "floor-tls-cpu-us/op")
	b.ReportMetric(perOp/floor.total(), "of-floor")
	b.ReportMetric(floor.tls-floor.classicTLS, "floor-mlkem-cpu-us/op")
	b.Logf("renewal floor, µs CPU: TLS server handshake %.0f (with X25519 alone %.0f), quote and CSR checks %.0f, HSM certificate %.0f; sigild %.0f (%.1f× the floor)",
		floor.tls, floor.classicTLS, floor.attest, floor.sign, perOp, perOp/floor.total())
}

// BenchmarkEnrollment measures enrollment end to end as `sigil enroll`
// does it, in this process (client.Enroll), one at a time, against real
// sigild (SQLite, SoftHSM, audit log on) and attestHosts swtpm hosts taken
// in turn: EK and a new AK in the TPM, the challenge, credential
// activation, a TPM key certified over the nonce, the quote and event log,
// the CSR, and sigild's checks, certificate, evidence and audit entry.
// sigild is pinned to one CPU, this process and every swtpm to the other.
// Metrics:
//
//	p50-ms, p99-ms       one enrollment, end to end
//	sigild-ms/op         sigild's CPU time per enrollment
//	sigild-share         sigild's CPU time over the enrollments' wall time:
//	                     the part of an enrollment that is sigild's work
func BenchmarkEnrollment(b *testing.B) {
	requireCPUs(b)
	s := startStackArgs(b, "--tpms", strconv.Itoa(attestHosts), "--store", "sqlite")
	bundle, err := os.ReadFile(s.env["SIGIL_CA_BUNDLE"])
	if err != nil {
		b.Fatal(err)
	}
	n := 0
	enroll := func() error {
		addr, log := s.tpm(n % attestHosts)
		name := fmt.Sprintf("enroll%d", n)
		n++
		_, err := client.Enroll(context.Background(), client.EnrollConfig{Server: s.env["SIGIL_SERVER"], CABundle: bundle,
			TPM: addr, EventLog: log, Identity: "spiffe://sigil.test/workload/" + name, StateDir: filepath.Join(s.dir, name)})
		return err
	}
	sigilds, self := sigildPIDs(b, s), os.Getpid()
	for _, pid := range sigilds {
		pin(b, pid, serverCPU)
	}
	defer pin(b, self, affinity(b, fmt.Sprintf("/proc/%d/status", self)))
	pin(b, self, clientCPU)
	for _, pid := range swtpmPIDs(b, s) {
		pin(b, pid, clientCPU)
	}
	for range attestHosts { // each TPM's first enrollment, and sigild's caches
		if err := enroll(); err != nil {
			b.Fatal(err)
		}
	}

	b.ResetTimer()
	cpu := cpuTimes(b, sigilds)
	began := time.Now()
	lat := make([]time.Duration, 0, enrollments)
	for range enrollments {
		start := time.Now()
		if err := enroll(); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	elapsed := time.Since(began)
	cpu = cpuTimes(b, sigilds) - cpu
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(ms(lat[len(lat)/2]), "p50-ms")
	b.ReportMetric(ms(lat[len(lat)*99/100]), "p99-ms")
	b.ReportMetric(ms(cpu)/float64(enrollments), "sigild-ms/op")
	b.ReportMetric(cpu.Seconds()/elapsed.Seconds(), "sigild-share")
}

func requireCPUs(b *testing.B) {
	b.Helper()
	if runtime.NumCPU() < 2 {
		b.Fatalf("%s needs 2 CPUs (sigild on one, the load on the other); this machine has %d", b.Name(), runtime.NumCPU())
	}
}

// swtpmPIDs are the stack's swtpm processes.
func swtpmPIDs(b *testing.B, s *stack) []int {
	b.Helper()
	files, _ := filepath.Glob(filepath.Join(s.dir, "tpm*", "swtpm.pid"))
	if len(files) == 0 {
		b.Fatalf("no swtpm.pid under %s", s.dir)
	}
	var pids []int
	for _, f := range files {
		pids = append(pids, readPID(b, f))
	}
	return pids
}

// hsmSignCPU is the CPU time, in µs, of one ES256 signature by the HSM key
// name of the stack's token, through hsm.Key as sigild signs: this process
// pinned to sigild's CPU with GOMAXPROCS 1, exchangeConcurrency goroutines,
// as the crypto floor of BenchmarkExchange.
func hsmSignCPU(b *testing.B, s *stack, name string) float64 {
	b.Helper()
	self := os.Getpid()
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	pin(b, self, serverCPU)
	h := openStackHSM(b, s)
	defer h.Close()
	key, err := h.Find(context.Background(), name)
	if err != nil {
		b.Fatal(err)
	}
	digest := sha256.Sum256([]byte("floor"))
	sign := func() error { _, err := key.Sign(nil, digest[:], crypto.SHA256); return err }
	const n = 2000
	cpu := cpuTime(b, self)
	drive(b, exchangeConcurrency, n, 0, sign)
	return us(cpuTime(b, self)-cpu) / n
}
