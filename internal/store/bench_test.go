package store

import (
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
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
				d  Device
				e  Evidence
				c  Certificate
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
