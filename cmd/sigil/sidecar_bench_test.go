package main_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	"github.com/sigil-dev/sigil/client"
	"github.com/sigil-dev/sigil/verify"
)

// Work per measurement of BenchmarkSidecar.
const (
	sidecarRequests   = 400 // sequential requests on a kept-alive connection
	sidecarHandshakes = 60  // new mTLS connections, each a request
	handshakeWorkers  = 4
)

// BenchmarkSidecar measures what `sigil agent` as a sidecar costs against
// a Go service using the client and verify libraries directly, in the same
// run on the same two TPMs (swtpm) and sigild:
//
//	direct    a Go caller (client.Client, TPM B) → a Go server (client's
//	          ServerTLSConfig + verify.Middleware, TPM A)
//	ingress   the same caller → sigil agent --ingress (TPM A) → a plain
//	          HTTP upstream in this process
//	sidecar   plain HTTP → sigil agent --egress (TPM B) → sigil agent
//	          --ingress (TPM A) → the upstream: both sides through agents
//
// Metrics: p50/p99 latency of a request on a kept-alive connection for each
// (ms), the added latency per request against direct (ms) and the ratio;
// mTLS handshakes/s (each a new connection with a token-bearing request,
// handshakeWorkers at once; both ends sign with their TPM key) for direct
// and ingress, and their ratio. It does a fixed amount of work whatever
// b.N is; read the custom metrics, not ns/op.
func BenchmarkSidecar(b *testing.B) {
	s := startStack(b, "2")
	id := func(n string) string { return "spiffe://sigil.test/workload/" + n }
	for i, n := range []string{"payments", "orders"} {
		addr, log := s.tpm(i)
		if out, code := s.run("sigil", "enroll", "--server-auth", "--tpm", addr, "--event-log", log, "--identity", id(n), "--state", filepath.Join(s.dir, n)); code != 0 {
			b.Fatalf("enroll %s: %s", n, out)
		}
	}
	ctx := context.Background()
	upstream := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })}
	upLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go upstream.Serve(upLn)
	defer upstream.Close()
	paymentsID := spiffeid.RequireFromString(id("payments"))

	caller, err := client.New(ctx, client.Config{StateDir: filepath.Join(s.dir, "orders")})
	if err != nil {
		b.Fatal(err)
	}
	// direct: the Go server on TPM A, in this process.
	directAddr, stopDirect := goServer(b, ctx, filepath.Join(s.dir, "payments"), upstream.Handler)
	direct := measureSidecar(b, caller, paymentsID, "https://"+directAddr+"/charge")
	stopDirect()

	payments := s.startAgent(b, "payments", "--openssl-check", "off", "--ingress", "127.0.0.1:0", "--upstream", "http://"+upLn.Addr().String())
	ingress := measureSidecar(b, caller, paymentsID, "https://"+payments.ready.Ingress+"/charge")
	caller.Close()

	orders := s.startAgent(b, "orders", "--openssl-check", "off", "--egress", "127.0.0.1:0",
		"--target", "payments=https://"+payments.ready.Ingress+" "+id("payments")+" payments:charge")
	plain := &http.Client{Timeout: 30 * time.Second}
	sidecar := sidecarLatencies(b, func() error { return sidecarGet(plain, "http://"+orders.ready.Egress+"/payments/charge") })

	p50 := func(d []time.Duration) float64 { return ms(d[len(d)/2]) }
	p99 := func(d []time.Duration) float64 { return ms(d[len(d)*99/100]) }
	b.ReportMetric(p50(direct.lat), "direct-p50-ms")
	b.ReportMetric(p99(direct.lat), "direct-p99-ms")
	b.ReportMetric(p50(ingress.lat), "ingress-p50-ms")
	b.ReportMetric(p99(ingress.lat), "ingress-p99-ms")
	b.ReportMetric(p50(sidecar), "sidecar-p50-ms")
	b.ReportMetric(p99(sidecar), "sidecar-p99-ms")
	b.ReportMetric(p50(ingress.lat)-p50(direct.lat), "ingress-added-ms")
	b.ReportMetric(p50(sidecar)-p50(direct.lat), "sidecar-added-ms")
	b.ReportMetric(p50(sidecar)/p50(direct.lat), "sidecar/direct-latency")
	b.ReportMetric(direct.handshakes, "direct-handshakes/s")
	b.ReportMetric(ingress.handshakes, "ingress-handshakes/s")
	b.ReportMetric(ingress.handshakes/direct.handshakes, "ingress/direct-handshakes")
}

type sidecarResult struct {
	lat        []time.Duration
	handshakes float64
}

// measureSidecar calls url as c with a token for server: latencies on one
// kept-alive connection, then handshakes/s with a connection per request.
func measureSidecar(b *testing.B, c *client.Client, server spiffeid.ID, url string) sidecarResult {
	b.Helper()
	keep := c.HTTPClient(server, "payments:charge")
	res := sidecarResult{lat: sidecarLatencies(b, func() error { return sidecarGet(keep, url) })}
	fresh := func() *http.Client {
		t := &http.Transport{TLSClientConfig: c.ClientTLSConfig(server), DisableKeepAlives: true}
		return &http.Client{Transport: sidecarBearer{c: c, audience: server.String(), next: t}, Timeout: 30 * time.Second}
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	start := time.Now()
	for w := range handshakeWorkers {
		hc := fresh()
		wg.Go(func() {
			for i := w; i < sidecarHandshakes; i += handshakeWorkers {
				if err := sidecarGet(hc, url); err != nil {
					mu.Lock()
					firstErr = err
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		b.Fatal(firstErr)
	}
	res.handshakes = float64(sidecarHandshakes) / time.Since(start).Seconds()
	return res
}

// sidecarBearer attaches the client's cached token for audience.
type sidecarBearer struct {
	c        *client.Client
	audience string
	next     http.RoundTripper
}

func (t sidecarBearer) RoundTrip(r *http.Request) (*http.Response, error) {
	tok, err := t.c.CachedToken(r.Context(), t.audience, []string{"payments:charge"}, "")
	if err != nil {
		return nil, err
	}
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	return t.next.RoundTrip(r)
}

// goServer serves h as the workload in state over mTLS with verify's
// Middleware, as a Go service does without the agent.
func goServer(b *testing.B, ctx context.Context, state string, h http.Handler) (string, func()) {
	b.Helper()
	c, err := client.New(ctx, client.Config{StateDir: state})
	if err != nil {
		b.Fatal(err)
	}
	v, err := c.Verifier(ctx)
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: v.Middleware(verify.RequireScope("payments:charge", h)),
		TLSConfig: c.ServerTLSConfig(tlsconfig.AuthorizeMemberOf(c.ID().TrustDomain()))}
	go srv.ServeTLS(ln, "", "")
	return ln.Addr().String(), func() { srv.Close(); c.Close() }
}

// sidecarLatencies runs call sidecarRequests times after a warm-up and returns
// the sorted durations.
func sidecarLatencies(b *testing.B, call func() error) []time.Duration {
	b.Helper()
	for range 20 {
		if err := call(); err != nil {
			b.Fatal(err)
		}
	}
	out := make([]time.Duration, 0, sidecarRequests)
	for range sidecarRequests {
		start := time.Now()
		if err := call(); err != nil {
			b.Fatal(err)
		}
		out = append(out, time.Since(start))
	}
	slices.Sort(out)
	return out
}

func sidecarGet(hc *http.Client, url string) error {
	resp, err := hc.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s %s", url, resp.Status, resp.Header.Get("WWW-Authenticate"))
	}
	return nil
}
