package hsm_test

import (
	"crypto"
	"crypto/sha256"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThalesGroup/crypto11"
	"github.com/sigil-dev/sigil/hsm"
	"github.com/sigil-dev/sigil/testenv"
)

// BenchmarkSign compares ES256 signing through hsm.Key with raw crypto11 on
// the same token and key, in the same run, at 1, 2 and 8 goroutines: on
// SoftHSM loaded in-process, and through p11-kit (a network HSM).
func BenchmarkSign(b *testing.B) {
	b.Run("softhsm", func(b *testing.B) {
		tok := testenv.SoftHSM(b)
		benchBackend(b, tok, tok.URI, tok.Module)
	})
	b.Run("p11kit", func(b *testing.B) {
		tok := testenv.SoftHSM(b)
		srv := testenv.P11KitServer(b, tok)
		benchBackend(b, tok, srv.URI, srv.Module)
	})
}

func benchBackend(b *testing.B, tok *testenv.HSMToken, uri, module string) {
	k := generate(b, open(b, uri), "bench", hsm.ES256)
	raw := rawSigner(b, tok, module, k.Label())
	for _, g := range []int{1, 2, 8} {
		b.Run(fmt.Sprintf("raw/g=%d", g), func(b *testing.B) { signLoop(b, g, raw) })
		b.Run(fmt.Sprintf("hsm/g=%d", g), func(b *testing.B) { signLoop(b, g, k) })
	}
}

// BenchmarkSignInterleaved measures the same comparison on SoftHSM in
// alternating 50 ms bursts (raw, hsm, hsm, raw, ...), so that load from
// other processes hits both alike, and reports the hsm/raw rate ratio.
func BenchmarkSignInterleaved(b *testing.B) {
	tok := testenv.SoftHSM(b)
	k := generate(b, open(b, tok.URI), "bench", hsm.ES256)
	raw := rawSigner(b, tok, tok.Module, k.Label())
	for _, g := range []int{1, 2, 8} {
		b.Run(fmt.Sprintf("g=%d", g), func(b *testing.B) {
			var rates [2]rate
			for i := 0; b.Loop(); i++ {
				rates[i%2].add(burst(b, g, raw))
				rates[1-i%2].add(burst(b, g, k))
			}
			r, h := rates[0].perSecond(), rates[1].perSecond()
			b.ReportMetric(r, "raw-sigs/s")
			b.ReportMetric(h, "hsm-sigs/s")
			b.ReportMetric(h/r, "hsm/raw")
		})
	}
}

type rate struct {
	n int64
	d time.Duration
}

func (r *rate) add(n int64, d time.Duration) { r.n, r.d = r.n+n, r.d+d }
func (r *rate) perSecond() float64           { return float64(r.n) / r.d.Seconds() }

// burst signs with g goroutines for 50 ms.
func burst(b *testing.B, g int, s crypto.Signer) (int64, time.Duration) {
	d := sha256.Sum256([]byte("bench"))
	var n atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	end := start.Add(50 * time.Millisecond)
	for range g {
		wg.Go(func() {
			for time.Now().Before(end) {
				if _, err := s.Sign(nil, d[:], crypto.SHA256); err != nil {
					b.Error(err)
					return
				}
				n.Add(1)
			}
		})
	}
	wg.Wait()
	return n.Load(), time.Since(start)
}

// rawSigner opens the key with crypto11 alone, with the pool settings hsm
// uses by default.
func rawSigner(b *testing.B, tok *testenv.HSMToken, module, label string) crypto.Signer {
	c, err := crypto11.Configure(&crypto11.Config{Path: module, TokenLabel: tok.Label, Pin: tok.PIN,
		MaxSessions: hsm.DefaultMaxSessions, PoolWaitTimeout: hsm.DefaultSessionWait})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = c.Close() })
	s, err := c.FindKeyPair(nil, []byte(label))
	if err != nil {
		b.Fatal(err)
	}
	return s
}

// signLoop shares b.N signatures among exactly g goroutines and reports
// signatures per second.
func signLoop(b *testing.B, g int, s crypto.Signer) {
	d := sha256.Sum256([]byte("bench"))
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for range g {
		wg.Go(func() {
			for next.Add(1) <= int64(b.N) {
				if _, err := s.Sign(nil, d[:], crypto.SHA256); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "sigs/s")
}
