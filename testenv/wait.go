package testenv

import (
	"errors"
	"testing"
	"time"
)

// WaitFor polls cond until it holds and returns how long that took. If cond
// still does not hold after limit it fails the test, saying it waited for
// what ("the rejection to be logged"). Use it where a test waits for
// something another goroutine or process does; never sleep instead.
func WaitFor(t testing.TB, limit time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	return WaitForNil(t, limit, what, func() error {
		if cond() {
			return nil
		}
		return errNotYet
	})
}

// WaitForNil is WaitFor for a check that says why it does not hold yet: it
// polls check until it returns nil, and the failure names its last error.
func WaitForNil(t testing.TB, limit time.Duration, what string, check func() error) time.Duration {
	t.Helper()
	start := time.Now()
	interval := time.Millisecond
	for {
		err := check()
		if err == nil {
			return time.Since(start)
		}
		if time.Since(start) > limit {
			if errors.Is(err, errNotYet) {
				t.Fatalf("testenv: waited %v for %s", limit, what)
			}
			t.Fatalf("testenv: waited %v for %s: %v", limit, what, err)
		}
		time.Sleep(interval)
		interval = min(2*interval, 20*time.Millisecond)
	}
}

var errNotYet = errors.New("condition does not hold")
