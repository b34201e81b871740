package postgres

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/internal/store/storetest"
	"github.com/sigil-dev/sigil/testenv"
)

// BenchmarkRecordToken measures the token service's write on PostgreSQL
// (a private cluster, fsync on) as a token exchange makes it: an external
// subject token, the token exchanged from it bound to a stored
// certificate, and its audit entry, from 16 goroutines. It runs the same
// records through store.RecordToken (one round trip, group commit) and,
// as the baseline in the same run, through one Tx each
// (TokenRecord.In: InsertExternalToken, InsertToken, AppendAudit),
// alternated rounds rounds. Metrics per record: this process's CPU
// (cpu-us/op, the client side, what sigild spends), PostgreSQL's
// (pg-cpu-us/op, every server process), the rate, and each as a ratio
// record/tx. jti=random is 128 random bits, as jtis were; jti=NewID the
// jtis tokens now have (time-ordered: the index inserts share pages).
func BenchmarkRecordToken(b *testing.B) {
	for _, jtis := range storetest.JTIs {
		b.Run(jtis.Name, func(b *testing.B) { benchRecordToken(b, jtis.New) })
	}
}

func benchRecordToken(b *testing.B, newJTI func() string) {
	pg := testenv.StartPostgres(b)
	st, err := Open(context.Background(), pg.NewDatabase(b))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	_, _, certs := storetest.Enroll(b, st, "d1", 1)
	ext := storetest.ExternalToken("ext:alice")
	ext.ExpiresAt = time.Now().Add(time.Hour)
	record := func(via func(context.Context, store.TokenRecord) error) func() error {
		return func() error {
			jti := newJTI()
			t := storetest.BoundToken(jti, ext.JTI, certs[0])
			t.ExpiresAt = ext.ExpiresAt
			return via(context.Background(), store.TokenRecord{External: &ext, Token: t, Entry: storetest.Entry(jti, "jti:"+jti)})
		}
	}
	viaRecord := record(st.(store.TokenRecorder).RecordToken)
	viaTx := record(func(ctx context.Context, r store.TokenRecord) error {
		return st.Tx(ctx, func(tx store.Tx) error { return r.In(ctx, tx) })
	})
	n := max(b.N, 2000)
	measureRecords(b, pg, 200, viaTx) // warm: statements prepared
	measureRecords(b, pg, 200, viaRecord)
	b.ResetTimer()
	var tx, rec recordCost
	const rounds = 3
	for range rounds {
		tx.add(measureRecords(b, pg, n/rounds, viaTx))
		rec.add(measureRecords(b, pg, n/rounds, viaRecord))
	}
	b.StopTimer()
	for _, m := range []struct {
		name    string
		rec, tx float64
	}{
		{"cpu-us/op", rec.cpuPerOp(), tx.cpuPerOp()},
		{"pg-cpu-us/op", rec.pgPerOp(), tx.pgPerOp()},
		{"records/s", rec.rate(), tx.rate()},
	} {
		b.ReportMetric(m.rec, m.name)
		b.ReportMetric(m.tx, "tx-"+m.name)
		b.ReportMetric(m.rec/m.tx, "record/tx-"+strings.TrimSuffix(m.name, "/op"))
	}
}

// recordCost sums what measureRecords measured.
type recordCost struct {
	n             int
	cpu, pg, took time.Duration
}

func (c *recordCost) add(o recordCost) {
	c.n, c.cpu, c.pg, c.took = c.n+o.n, c.cpu+o.cpu, c.pg+o.pg, c.took+o.took
}
func (c recordCost) cpuPerOp() float64 { return float64(c.cpu.Microseconds()) / float64(c.n) }
func (c recordCost) pgPerOp() float64  { return float64(c.pg.Microseconds()) / float64(c.n) }
func (c recordCost) rate() float64     { return float64(c.n) / c.took.Seconds() }

// measureRecords runs op n times from 16 goroutines and returns its cost.
func measureRecords(b *testing.B, pg *testenv.Postgres, n int, op func() error) recordCost {
	var next atomic.Int64
	var wg sync.WaitGroup
	cpu, pgCPU, began := testenv.ProcessCPU(b), serverCPU(b, pg), time.Now()
	for range 16 {
		wg.Go(func() {
			for next.Add(1) <= int64(n) {
				if err := op(); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	return recordCost{n: n, cpu: testenv.ProcessCPU(b) - cpu, pg: serverCPU(b, pg) - pgCPU, took: time.Since(began)}
}

// serverCPU is the CPU time of pg's postmaster, its reaped children and
// its running ones.
func serverCPU(b *testing.B, pg *testenv.Postgres) time.Duration {
	const ticks = 100 // USER_HZ
	post := pg.PID()
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	var sum time.Duration
	for _, path := range stats {
		raw, err := os.ReadFile(path)
		if err != nil {
			continue // exited meanwhile
		}
		s := string(raw)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:]) // from field 3 on
		pid, _ := strconv.Atoi(strings.Split(path, "/")[2])
		ppid, _ := strconv.Atoi(f[1])
		if pid != post && ppid != post {
			continue
		}
		fields := f[11:13] // utime, stime
		if pid == post {
			fields = f[11:15] // and the reaped children's
		}
		for _, t := range fields {
			v, _ := strconv.ParseInt(t, 10, 64)
			sum += time.Duration(v) * time.Second / ticks
		}
	}
	return sum
}
