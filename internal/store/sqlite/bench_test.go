package sqlite

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/audit"
	"github.com/sigil-dev/sigil/testenv"

	"github.com/sigil-dev/sigil/internal/store"
)

// BenchmarkEnroll measures enrollment completions: one transaction that
// consumes a challenge, binds the device, stores the evidence and inserts
// the certificate, from one goroutine and from 32 per CPU, with the default
// synchronous=FULL and with synchronous=NORMAL, which an operator may pick.
func BenchmarkEnroll(b *testing.B) {
	for _, bc := range []struct {
		name, query string
		parallel    bool
	}{
		{"serial/sync=FULL", "", false},
		{"parallel/sync=FULL", "", true},
		{"serial/sync=NORMAL", "?_pragma=synchronous(NORMAL)", false},
		{"parallel/sync=NORMAL", "?_pragma=synchronous(NORMAL)", true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			parallel := bc.parallel
			st := openPath(b, filepath.Join(b.TempDir(), "sigil.db")+bc.query)
			ctx := context.Background()
			type job struct {
				id string
				d  store.Device
				e  store.Evidence
				c  store.Certificate
			}
			jobs := make([]job, b.N)
			for i := range jobs {
				name := fmt.Sprintf("bench-%d", i)
				d := testDevice(name)
				ch, e := testChallenge(name, d), testEvidence(name, d)
				if err := st.CreateChallenge(ctx, ch); err != nil {
					b.Fatal(err)
				}
				jobs[i] = job{ch.ID, d, e, testCertificate(name, d, e)}
			}
			var next atomic.Int64
			run := func() {
				j := jobs[next.Add(1)-1]
				if err := completeEnrollment(ctx, st, j.id, j.d, j.e, j.c, nil); err != nil {
					b.Error(err)
				}
			}
			b.ResetTimer()
			began := time.Now()
			if parallel {
				b.SetParallelism(32)
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						run()
					}
				})
			} else {
				for range b.N {
					run()
				}
			}
			b.ReportMetric(float64(b.N)/time.Since(began).Seconds(), "tx/s")
		})
	}
}

// BenchmarkAuditTx measures Tx calls that append an audit entry and insert
// a record (a challenge), as an audited operation does, with the default
// synchronous=FULL, from 1 and from 64 goroutines, group-committed (the
// default batch of 64) and not (WithMaxBatch(1)): the ratio of the two is
// what group commit buys.
func BenchmarkAuditTx(b *testing.B) {
	for _, goroutines := range []int{1, 64} {
		for _, mode := range []struct {
			name     string
			maxBatch int
		}{{"group", defaultMaxBatch}, {"batch=1", 1}} {
			b.Run(fmt.Sprintf("goroutines=%d/%s", goroutines, mode.name), func(b *testing.B) {
				benchAuditTx(b, goroutines, mode.maxBatch)
			})
		}
	}
}

func benchAuditTx(b *testing.B, goroutines, maxBatch int) {
	ctx := context.Background()
	st, err := Open(ctx, filepath.Join(b.TempDir(), "sigil.db"), WithMaxBatch(maxBatch))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	d := testDevice("bench")
	driveTx(b, goroutines, func(i int64) error {
		name := fmt.Sprintf("bench-%d", i)
		return st.Tx(ctx, func(tx store.Tx) error {
			if err := tx.CreateChallenge(ctx, testChallenge(name, d)); err != nil {
				return err
			}
			_, err := tx.AppendAudit(ctx, testEntry(name, "jti:"+name))
			return err
		})
	})
}

// driveTx runs op for i in [0, b.N) from goroutines goroutines and
// reports the rate as tx/s.
func driveTx(b *testing.B, goroutines int, op func(i int64) error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	began, cpu := time.Now(), testenv.ProcessCPU(b)
	for range goroutines {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < int64(b.N); i = next.Add(1) - 1 {
				if err := op(i); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(began).Seconds(), "tx/s")
	b.ReportMetric(float64((testenv.ProcessCPU(b)-cpu).Microseconds())/float64(b.N), "cpu-us/op")
}

// BenchmarkAuditProof: an inclusion and a consistency proof over a log of
// 100,000 entries in SQLite, recomputed from every leaf hash ("leaves",
// the audit package's path for a bare LeafHashReader) and from the stored
// nodes ("nodes"). backfill-s/op is how long Open took to backfill the
// nodes of the log, written without them.
func BenchmarkAuditProof(b *testing.B) {
	const size = 100_000
	path, _ := legacyAuditLog(b, size)
	began := time.Now()
	st := openPath(b, path)
	backfill := time.Since(began)
	ctx := context.Background()
	for name, r := range map[string]audit.LeafHashReader{"leaves": leafReader{st}, "nodes": store.AuditStorage(st)} {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				if _, err := audit.InclusionProof(ctx, r, size/3, size); err != nil {
					b.Fatal(err)
				}
				if _, err := audit.ConsistencyProof(ctx, r, size/2+1, size); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(backfill.Seconds(), "backfill-s")
		})
	}
}

// leafReader is st as a bare audit.LeafHashReader.
type leafReader struct{ st store.Store }

func (r leafReader) LeafHashes(ctx context.Context, start, end uint64) ([][]byte, error) {
	return r.st.AuditLeafHashes(ctx, start, end)
}

// BenchmarkAuditInit is sigild's start-up check of an audit log of a
// million entries in SQLite: audit.Log.Init reads every entry and its
// stored leaf hash, hashes the entry again, rebuilds the tree, and checks
// its root against the latest checkpoint and its nodes against the stored
// ones. ns/op is the whole check.
func BenchmarkAuditInit(b *testing.B) {
	const size = 1_000_000
	path, _ := legacyAuditLog(b, size)
	st := openPath(b, path)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	const origin = "sigil.test/sigil-audit"
	signer, err := audit.NewSigner(origin, key)
	if err != nil {
		b.Fatal(err)
	}
	newLog := func() *audit.Log {
		l, err := audit.New(store.AuditStorage(st), signer, origin, audit.WithLogger(slog.New(slog.DiscardHandler)))
		if err != nil {
			b.Fatal(err)
		}
		return l
	}
	if err := newLog().Integrate(b.Context()); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if err := newLog().Init(b.Context()); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(size*b.N)/b.Elapsed().Seconds(), "entries/s")
}
