package main_test

import (
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/sigil-dev/sigil/client"
	"github.com/sigil-dev/sigil/hsm"
)

// exchangeConcurrency is how many goroutines drive the exchanges, and the
// crypto floor, over one HTTP/2 mTLS connection kept alive.
const exchangeConcurrency = 16

// exchanges per measurement; SIGIL_BENCH_EXCHANGES overrides it (longer
// runs, for profiling sigild with SIGILD_FLAGS="--pprof 127.0.0.1:6060").
var exchanges = func() int {
	if n, err := strconv.Atoi(os.Getenv("SIGIL_BENCH_EXCHANGES")); err == nil && n > 0 {
		return n
	}
	return 3000
}()

// BenchmarkExchange runs a real sigild (SoftHSM, SQLite, audit log on) and
// measures token exchange over mTLS keep-alive against the crypto floor of
// one exchange measured in the same run: verifying the subject token plus
// one HSM signature, at the same concurrency. It does a fixed amount of
// work whatever b.N is (the setup takes seconds); read the custom metrics,
// not ns/op:
//
//	exchanges/s, p50-ms, p99-ms   at full load
//	floor-ops/s, of-floor         the crypto floor and the ratio to it
//	half-load-p99-ms              p99 at half the measured peak rate
func BenchmarkExchange(b *testing.B) {
	s := startStack(b, "2")
	for i, n := range []string{"frontend", "orders"} {
		if out, code := s.enroll(i, "spiffe://sigil.test/workload/"+n, filepath.Join(s.dir, n)); code != 0 {
			b.Fatalf("enroll %s: %s", n, out)
		}
	}
	user, code := s.runBinary("demoidp", "token", s.env["SIGIL_IDP_DIR"], "-sub", "alice",
		"-aud", "spiffe://sigil.test/workload/frontend", "-scope", "orders:read", "-ttl", "1h")
	if code != 0 {
		b.Fatalf("demoidp: %s", user)
	}
	user = strings.TrimSpace(user)
	ctx := context.Background()
	w, err := client.Open(ctx, filepath.Join(s.dir, "frontend"))
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	req := client.TokenRequest{SubjectToken: user, Audience: []string{"spiffe://sigil.test/workload/orders"}, Scope: []string{"orders:read"}}
	exchange := func() error { _, err := w.Token(ctx, req); return err }
	if err := exchange(); err != nil { // the TLS handshake, signed by the TPM
		b.Fatal(err)
	}
	floor := cryptoFloor(b, s, user)

	b.ResetTimer()
	full := drive(b, exchangeConcurrency, exchanges, 0, exchange)
	base := drive(b, exchangeConcurrency, exchanges, 0, floor)
	half := drive(b, exchangeConcurrency, exchanges/2, time.Duration(float64(time.Second)/(full.rate/2)), exchange)
	b.StopTimer()
	b.ReportMetric(full.rate, "exchanges/s")
	b.ReportMetric(ms(full.p50), "p50-ms")
	b.ReportMetric(ms(full.p99), "p99-ms")
	b.ReportMetric(base.rate, "floor-ops/s")
	b.ReportMetric(full.rate/base.rate, "of-floor")
	b.ReportMetric(ms(half.p99), "half-load-p99-ms")
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
	os.Setenv("SOFTHSM2_CONF", s.env["SOFTHSM2_CONF"])
	h, err := hsm.Open(context.Background(), s.env["SIGIL_HSM_URI"])
	if err != nil {
		b.Fatal(err)
	}
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

type load struct {
	rate     float64
	p50, p99 time.Duration
}

// drive runs op n times from g goroutines; with every > 0, starts are paced
// to one per every.
func drive(b *testing.B, g, n int, every time.Duration, op func() error) load {
	b.Helper()
	jobs := make(chan struct{})
	lat := make([]time.Duration, 0, n)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range g {
		wg.Go(func() {
			for range jobs {
				start := time.Now()
				if err := op(); err != nil {
					b.Error(err)
				}
				mu.Lock()
				lat = append(lat, time.Since(start))
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
	return load{rate: float64(n) / elapsed.Seconds(), p50: lat[len(lat)/2], p99: lat[len(lat)*99/100]}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
