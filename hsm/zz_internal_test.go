package hsm

import (
	"context"
	"crypto"
	"crypto/elliptic"
	"crypto/sha256"
	"testing"
	"time"

	"github.com/ThalesGroup/crypto11"
	"github.com/sigil-dev/sigil/testenv"
)

func plainRun(w *workers, f func() ([]byte, error)) ([]byte, error) {
	ch := make(chan result[[]byte], 1)
	w.jobs <- func() { v, err := f(); ch <- result[[]byte]{v, err} }
	r := <-ch
	return r.v, r.err
}

func timerRun(w *workers, d time.Duration, f func() ([]byte, error)) ([]byte, error) {
	ch := make(chan result[[]byte], 1)
	w.jobs <- func() { v, err := f(); ch <- result[[]byte]{v, err} }
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case r := <-ch:
		return r.v, r.err
	case <-t.C:
		return nil, context.DeadlineExceeded
	}
}

func TestZZHop(t *testing.T) {
	tok := testenv.SoftHSM(t)
	c, err := crypto11.Configure(&crypto11.Config{Path: tok.Module, TokenLabel: tok.Label, Pin: tok.PIN, MaxSessions: 16, PoolWaitTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.GenerateECDSAKeyPairWithLabel([]byte("i"), []byte("l"), elliptic.P256())
	if err != nil {
		t.Fatal(err)
	}
	dg := sha256.Sum256([]byte("x"))
	f := func() ([]byte, error) { return s.Sign(nil, dg[:], crypto.SHA256) }
	w := startWorkers(16)
	fs := []func(){
		func() { f() },
		func() { plainRun(w, f) },
		func() { timerRun(w, 5*time.Second, f) },
		func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			run(ctx, w, f)
			cancel()
		},
	}
	sums := make([]time.Duration, len(fs))
	for i := 0; i < 8000; i++ {
		for j, g := range fs {
			t0 := time.Now()
			g()
			sums[j] += time.Since(t0)
		}
	}
	for j := range sums {
		sums[j] /= 8000
	}
	t.Logf("inline %v plain %v timer %v ctx %v", sums[0], sums[1], sums[2], sums[3])
}
