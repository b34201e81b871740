package sqlite

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/internal/store/storetest"
)

// BenchmarkRecordToken measures the token service's write as a token
// exchange makes it (store.RecordToken): the external subject token's
// record (already stored), the token, exchanged from it and bound to a
// stored certificate, and its audit entry of an exchange's size, from 16
// goroutines (BenchmarkExchange's clients), with synchronous=FULL and
// group commit. Besides cpu-us/op it reports the mean transactions per
// COMMIT (calls/commit) and the share of calls that ran alone. jti=random
// is 128 random bits, as jtis were; jti=NewID the jtis tokens now have.
func BenchmarkRecordToken(b *testing.B) {
	for _, jtis := range storetest.JTIs {
		b.Run(jtis.Name, func(b *testing.B) { benchRecordToken(b, jtis.New) })
	}
}

func benchRecordToken(b *testing.B, newJTI func() string) {
	ctx := context.Background()
	st := openPath(b, filepath.Join(b.TempDir(), "sigil.db"))
	_, _, certs := enrolled(b, st, "record", 1)
	ext := externalToken("ext:subject")
	pad := strings.Repeat("x", 700) // an exchange's audit entry is about 800 bytes
	driveTx(b, 16, func(int64) error {
		jti := newJTI()
		t := testToken(jti, ext.JTI)
		t.CNF = certs[0].Thumbprint()
		return store.RecordToken(ctx, st, store.TokenRecord{
			External: &ext, Token: t, Entry: storetest.Entry(jti+pad, "jti:"+jti),
		})
	})
	reportCommits(b, st)
}

// reportCommits reports how st's committer grouped the benchmark's
// transactions, and about how many WAL frames (pages) they wrote.
func reportCommits(b *testing.B, st store.Store) {
	s, ok := st.(*sqliteStore)
	if !ok {
		return
	}
	alone, batches, batched := s.gc.stats.alone.Load(), s.gc.stats.batches.Load(), s.gc.stats.batched.Load()
	if commits := alone + batches; commits > 0 {
		b.ReportMetric(float64(alone+batched)/float64(commits), "calls/commit")
		b.ReportMetric(float64(alone)/float64(alone+batched), "alone/call")
	}
	// The checkpointer stopped, its counts and the WAL's frames since its
	// last checkpoint.
	if err := s.ck.close(); err != nil {
		b.Fatal(err)
	}
	var busy, log, done int64
	if err := s.w.QueryRow(`PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &log, &done); err != nil {
		b.Fatal(err)
	}
	frames := log - s.ck.lastLog
	if log < s.ck.lastLog {
		frames = log // started over
	}
	b.ReportMetric(float64(s.ck.stats.frames.Load()+frames)/float64(b.N), "wal-frames/op")
}
