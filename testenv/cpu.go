package testenv

import (
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// ProcessCPU is the user and system CPU time this process has used: what
// a benchmark's work costs, which waiting (for fsync, the network) does
// not blur.
func ProcessCPU(t testing.TB) time.Duration {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// RunConcurrently does op n times in all from goroutines goroutines and
// returns the CPU time this process used meanwhile. An error of op fails
// the benchmark and stops that goroutine.
func RunConcurrently(t testing.TB, n, goroutines int, op func() error) time.Duration {
	var next atomic.Int64
	var wg sync.WaitGroup
	start := ProcessCPU(t)
	for range goroutines {
		wg.Go(func() {
			for next.Add(1) <= int64(n) {
				if err := op(); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	return ProcessCPU(t) - start
}
