package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/testenv"
)

// syncBuffer is a bytes.Buffer safe for the logBuffer's timer goroutine.
type syncBuffer struct {
	mu     sync.Mutex
	b      bytes.Buffer
	writes int
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writes++
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (s *syncBuffer) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.writes
}

// Batched lines wait; any other line is written at once with the batched
// lines before it, in order; the batched ones left are written within
// the interval.
func TestLogBatchesOnlyTheNamedLine(t *testing.T) {
	t.Parallel()
	var out syncBuffer
	log, _ := newLogger(&out, nil, "tokens: issued")
	log.Info("tokens: issued", "jti", "a")
	log.Info("tokens: issued", "jti", "b")
	if out.String() != "" {
		t.Fatalf("a batched line was written at once: %q", out.String())
	}
	log.Info("policy set loaded", "version", "v1")
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 || out.count() != 1 {
		t.Fatalf("after an unbatched line: %d lines in %d writes, want 3 in 1:\n%s", len(lines), out.count(), out.String())
	}
	for i, want := range []string{`"jti":"a"`, `"jti":"b"`, `"msg":"policy set loaded"`} {
		if !strings.Contains(lines[i], want) {
			t.Errorf("line %d = %s, want it to contain %s", i, lines[i], want)
		}
	}
	log.Info("tokens: issued", "jti", "c")
	testenv.WaitFor(t, 5*time.Second, "the batched line to be written by the timer", func() bool {
		return strings.Contains(out.String(), `"jti":"c"`)
	})
}

// Concurrent lines are each written whole, as JSON lines, and Flush
// writes everything queued.
func TestLogBufferConcurrentLines(t *testing.T) {
	t.Parallel()
	var out syncBuffer
	log, logs := newLogger(&out, nil, "tokens: issued")
	const goroutines, each = 8, 200
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				log.With("g", g).Info("tokens: issued", "i", i, "pad", strings.Repeat("x", 100))
			}
		})
	}
	wg.Wait()
	if err := logs.Flush(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != goroutines*each {
		t.Fatalf("%d lines, want %d", len(lines), goroutines*each)
	}
	seen := map[string]bool{}
	for _, l := range lines {
		var rec struct {
			G, I int
		}
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatalf("line not whole JSON: %v: %q", err, l)
		}
		seen[fmt.Sprint(rec.G, rec.I)] = true
	}
	if len(seen) != goroutines*each {
		t.Fatalf("%d distinct lines, want %d", len(seen), goroutines*each)
	}
	if out.count() > goroutines*each/10 {
		t.Errorf("%d writes for %d lines: not batched", out.count(), goroutines*each)
	}
}

// A buffer that reaches logFlushSize is written by the Write that fills
// it, without waiting for the interval.
func TestLogBufferFullIsWritten(t *testing.T) {
	t.Parallel()
	var out syncBuffer
	b := newLogBuffer(&out)
	line := []byte(strings.Repeat("x", 1023) + "\n")
	for range logFlushSize/len(line) - 1 {
		b.Write(line)
	}
	if out.count() != 0 {
		t.Fatalf("written before the buffer was full: %d writes", out.count())
	}
	b.Write(line)
	if out.count() != 1 || len(out.String()) != logFlushSize {
		t.Fatalf("full buffer: %d writes of %d bytes, want 1 of %d", out.count(), len(out.String()), logFlushSize)
	}
}
