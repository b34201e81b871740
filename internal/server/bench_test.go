package server

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sigil-dev/sigil/internal/tokens"
	"github.com/sigil-dev/sigil/internal/tokens/tokenstest"
)

// BenchmarkTokenEndpoint is BenchmarkExchangeInProcess (internal/tokens)
// through sigild's HTTP handler: the same token exchange, POSTed over
// HTTP/2 with mutual TLS by 16 goroutines on one connection, as
// BenchmarkExchange's clients do, but server and client in this process.
// cpu-us/op is this process's CPU time per exchange, both sides; what the
// HTTP layer adds to the service shows against BenchmarkExchangeInProcess,
// and a change to it in an A/B of this benchmark alone. Run it with
// GOMAXPROCS=1 (and taskset) to see it as sigild's one CPU would.
func BenchmarkTokenEndpoint(b *testing.B) {
	e := tokenstest.New(b)
	s := &Server{Tokens: e.Service, Log: tokenstest.Logger(b), Registry: prometheus.NewRegistry()}
	srv := httptest.NewUnstartedServer(s.Handler())
	srv.TLS = e.ServerTLS(b)
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	frontend, orders := e.Workload(b, "frontend"), e.Workload(b, "orders")
	user := e.IdP.Token(b, "alice", frontend.ID, "orders:read")
	form := exchangeForm(user, orders.ID, "scope", "orders:read").Encode()
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: e.ClientTLS(frontend), ForceAttemptHTTP2: true}}
	exchange := func() error {
		resp, err := c.Post(srv.URL+tokens.PathToken, "application/x-www-form-urlencoded", strings.NewReader(form))
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return &statusError{resp.StatusCode}
		}
		return nil
	}
	drive(b, 200, exchange) // warm: the connection, statements, caches
	b.ReportAllocs()
	b.ResetTimer()
	cpu := drive(b, b.N, exchange)
	b.ReportMetric(float64(cpu)/float64(time.Microsecond)/float64(b.N), "cpu-us/op")
}

type statusError struct{ status int }

func (e *statusError) Error() string { return http.StatusText(e.status) }

// drive does op n times from 16 goroutines and returns the CPU time this
// process used meanwhile.
func drive(b *testing.B, n int, op func() error) time.Duration {
	var next atomic.Int64
	var wg sync.WaitGroup
	start := processCPU(b)
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
	return processCPU(b) - start
}

func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
