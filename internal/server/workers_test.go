package server

import (
	"bytes"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/testenv"
)

// serveWorkers serves h on p over HTTP/2 with TLS, as sigild does, and
// returns the server's URL, a client, and the server's error log.
func serveWorkers(t *testing.T, p *workers, h http.HandlerFunc) (string, *http.Client, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	srv := httptest.NewUnstartedServer(p.handler(h))
	srv.EnableHTTP2 = true
	srv.Config.ErrorLog = log.New(logs, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.URL, srv.Client(), logs
}

func get(t *testing.T, c *http.Client, url string) (string, error) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// Requests one after another are served by one kept worker, not a new
// goroutine each (which is what the workers are for).
func TestWorkersReuseIdleWorker(t *testing.T) {
	t.Parallel()
	p := newWorkers(4, time.Minute)
	url, c, _ := serveWorkers(t, p, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.URL.Path) })
	for range 20 {
		if body, err := get(t, c, url+"/x"); err != nil || body != "/x" {
			t.Fatalf("GET: %q, %v", body, err)
		}
	}
	if n := p.kept.Load(); n != 1 {
		t.Errorf("%d workers kept after 20 sequential requests, want 1", n)
	}
}

// A request that does not end (a revocation feed stream) never holds up
// another, even when every kept worker is busy; and no more than the bound
// are kept.
func TestWorkersNeverQueue(t *testing.T) {
	t.Parallel()
	p := newWorkers(1, time.Minute)
	release := make(chan struct{})
	url, c, _ := serveWorkers(t, p, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/block" {
			<-release
		}
		io.WriteString(w, "ok")
	})
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			if _, err := get(t, c, url+"/block"); err != nil {
				t.Error(err)
			}
		})
	}
	for range 3 {
		if body, err := get(t, c, url+"/free"); err != nil || body != "ok" {
			t.Fatalf("GET while others block: %q, %v", body, err)
		}
	}
	close(release)
	wg.Wait()
	if n := p.kept.Load(); n > 1 {
		t.Errorf("%d workers kept, bound 1", n)
	}
}

// Idle workers go away.
func TestWorkersIdleExit(t *testing.T) {
	t.Parallel()
	p := newWorkers(4, 20*time.Millisecond)
	url, c, _ := serveWorkers(t, p, func(w http.ResponseWriter, r *http.Request) {})
	if _, err := get(t, c, url); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 5*time.Second, "idle workers to exit", func() bool { return p.kept.Load() == 0 })
}

// A handler's panic reaches net/http on the request's goroutine: the
// request fails, the log names the panic and where it happened on the
// worker, http.ErrAbortHandler stays silent, and the worker serves on.
func TestWorkersPanic(t *testing.T) {
	t.Parallel()
	p := newWorkers(4, time.Minute)
	url, c, logs := serveWorkers(t, p, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/boom":
			panicInHandler()
		case "/abort":
			panic(http.ErrAbortHandler)
		}
		io.WriteString(w, "ok")
	})
	if _, err := get(t, c, url+"/abort"); err == nil {
		t.Error("an aborted handler's request succeeded")
	}
	if _, err := get(t, c, url+"/boom"); err == nil {
		t.Error("a panicking handler's request succeeded")
	}
	testenv.WaitFor(t, 5*time.Second, "the panic logged", func() bool { return strings.Contains(logs.String(), "boom") })
	log := logs.String()
	for _, want := range []string{"worker goroutine stack", "panicInHandler"} {
		if !strings.Contains(log, want) {
			t.Errorf("panic log lacks %q:\n%s", want, log)
		}
	}
	if strings.Count(log, "panic serving") != 1 {
		t.Errorf("want exactly one panic logged (ErrAbortHandler is silent):\n%s", log)
	}
	if body, err := get(t, c, url+"/ok"); err != nil || body != "ok" {
		t.Fatalf("GET after panics: %q, %v", body, err)
	}
	if n := p.kept.Load(); n != 1 {
		t.Errorf("%d workers kept, want the one that recovered", n)
	}
}

func panicInHandler() { panic("boom") }

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
