package main_test

import (
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/audit"

	"github.com/sigil-dev/sigil/testenv"
)

// Kill sigild (SIGKILL) in the middle of a burst of enrollments from two
// hosts; after a restart the audit log verifies and holds every enrollment
// that was reported a success.
func TestCrashDuringEnrollmentBurst(t *testing.T) {
	s := startStack(t, "2")
	var (
		mu        sync.Mutex
		succeeded []string // SPIFFE IDs whose enrollment returned success
		wg        sync.WaitGroup
		stop      = make(chan struct{})
	)
	for host := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				id := fmt.Sprintf("spiffe://sigil.test/workload/burst-%d-%d", host, n)
				out, code := s.enroll(host, id, filepath.Join(s.dir, fmt.Sprintf("burst-%d-%d", host, n)))
				if code == 0 {
					mu.Lock()
					succeeded = append(succeeded, id)
					mu.Unlock()
				} else if !transportFailure(out) {
					t.Errorf("enrollment failed other than by the crash: %s", out)
				}
			}
		}()
	}
	testenv.WaitFor(t, 30*time.Second, "six enrollments", func() bool { mu.Lock(); defer mu.Unlock(); return len(succeeded) >= 6 })
	pid := readPID(t, filepath.Join(s.dir, "sigild.pid"))
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	close(stop)
	wg.Wait()
	testenv.WaitFor(t, 10*time.Second, "the killed sigild to be gone", func() bool { return syscall.Kill(pid, 0) != nil })

	s.up(t) // restarts sigild
	// The restarted sigild signs a checkpoint over what the crash left
	// within a checkpoint interval.
	var missing []string
	defer func() {
		if len(missing) > 0 {
			t.Errorf("enrollments that returned success but are not in the log: %v", missing)
		}
	}()
	testenv.WaitFor(t, 15*time.Second, "every successful enrollment in the log", func() bool {
		logged := loggedIdentities(t, s)
		missing = missing[:0]
		for _, id := range succeeded {
			if !logged[id] {
				missing = append(missing, id)
			}
		}
		return len(missing) == 0
	})
	out, code := s.run("sigil", "audit", "verify", "--auditor", s.auditor(t), "--state", filepath.Join(t.TempDir(), "state"))
	if code != 0 {
		t.Fatalf("audit verify after the crash: exit %d\n%s", code, out)
	}
	t.Logf("%d enrollments succeeded before the crash; all in the log", len(succeeded))
}

// loggedIdentities exports the log and returns the SPIFFE IDs it enrolled.
func loggedIdentities(t *testing.T, s *stack) map[string]bool {
	t.Helper()
	ids := map[string]bool{}
	for _, e := range loggedEntries(t, s) {
		if p, err := e.Payload(); err == nil {
			if en, ok := p.(*audit.Enrollment); ok {
				ids[en.SPIFFEID] = true
			}
		}
	}
	return ids
}

// transportFailure reports whether a failed enrollment's output is the
// connection dropping (the crash), not an answer of the server.
func transportFailure(out string) bool {
	for _, s := range []string{"client: Post", "connection refused", "EOF", "broken pipe", "connection reset"} {
		if strings.Contains(out, s) {
			return true
		}
	}
	return false
}
