package testenv

import (
	"errors"
	"fmt"
	"runtime"
	"testing"
	"time"
)

// fatalRecorder keeps what Fatalf said and ends the goroutine, as t.Fatalf.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (r *fatalRecorder) Helper() {}

func (r *fatalRecorder) Fatalf(format string, args ...any) {
	r.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// fatalOf runs f with a recorder and returns what it failed with.
func fatalOf(t *testing.T, f func(tb testing.TB)) string {
	r := &fatalRecorder{TB: t}
	done := make(chan struct{})
	go func() { defer close(done); f(r) }()
	<-done
	return r.msg
}

func TestWaitFor(t *testing.T) {
	n := 0
	if msg := fatalOf(t, func(tb testing.TB) { WaitFor(tb, time.Minute, "three polls", func() bool { n++; return n == 3 }) }); msg != "" || n != 3 {
		t.Errorf("WaitFor on a condition that comes true: failed %q after %d polls", msg, n)
	}
	msg := fatalOf(t, func(tb testing.TB) { WaitFor(tb, 20*time.Millisecond, "the impossible", func() bool { return false }) })
	if want := "testenv: waited 20ms for the impossible"; msg != want {
		t.Errorf("WaitFor that times out failed with %q, want %q", msg, want)
	}
	msg = fatalOf(t, func(tb testing.TB) {
		WaitForNil(tb, 20*time.Millisecond, "the impossible", func() error { return errors.New("still not") })
	})
	if want := "testenv: waited 20ms for the impossible: still not"; msg != want {
		t.Errorf("WaitForNil that times out failed with %q, want %q", msg, want)
	}
}
