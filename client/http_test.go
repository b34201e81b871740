package client

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
)

// Over HTTP/1.1 the client keeps a connection for each request in flight:
// once 16 goroutines have their connections, 20 more requests each open at
// most another 32 (a request may dial while a connection is on its way
// back to the pool: 0–16 here), where with Go's default of 2 idle
// connections per host 100–140 of the 320 requests opened one.
func TestHTTPClientKeepsConnectionsOverHTTP1(t *testing.T) {
	t.Parallel()
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor != 1 {
			t.Errorf("request over %s, want HTTP/1.1", r.Proto)
		}
		io.WriteString(w, "ok\n")
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.StartTLS() // HTTP/1.1 only: EnableHTTP2 is false
	defer srv.Close()
	roots := srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	hc := newHTTPClient(roots, nil)
	defer hc.CloseIdleConnections()
	const goroutines, each = 16, 20
	run := func(n int) {
		var wg sync.WaitGroup
		for range goroutines {
			wg.Go(func() {
				for range n {
					resp, err := hc.Get(srv.URL)
					if err != nil {
						t.Error(err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			})
		}
		wg.Wait()
	}
	run(1) // the connections
	opened := conns.Load()
	run(each)
	if n := conns.Load() - opened; n > 2*goroutines {
		t.Errorf("%d new connections for %d more requests from %d goroutines (%d open already), want at most %d", n, goroutines*each, goroutines, opened, 2*goroutines)
	}
}
