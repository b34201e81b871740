package server

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sigil-dev/sigil/internal/tokens"
	"github.com/sigil-dev/sigil/internal/tokens/tokenstest"
	"github.com/sigil-dev/sigil/testenv"
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
	testenv.RunConcurrently(b, 200, 16, exchange) // warm: the connection, statements, caches
	b.ReportAllocs()
	b.ResetTimer()
	cpu := testenv.RunConcurrently(b, b.N, 16, exchange)
	b.ReportMetric(float64(cpu)/float64(time.Microsecond)/float64(b.N), "cpu-us/op")
}

type statusError struct{ status int }

func (e *statusError) Error() string { return http.StatusText(e.status) }
