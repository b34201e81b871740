package postgres

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	osexec "os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/testenv"
)

// holderEnv, set to a DSN, makes TestPausedHolderLosesLock the lock
// holder, in a process of its own.
const holderEnv = "SIGIL_TEST_LOCK_HOLDER"

// TestPausedHolderLosesLock: a process holding a lock and then paused
// (SIGSTOP, as a stalled replica) loses it within store.LockTTL and a
// margin: another process takes it. Resumed (SIGCONT), the old holder's
// Held reports the lock lost, so it does not act on it.
func TestPausedHolderLosesLock(t *testing.T) {
	if dsn := os.Getenv(holderEnv); dsn != "" {
		holdLock(t, dsn)
		return
	}
	dsn := testenv.PostgresDB(t)
	st, err := Open(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := osexec.Command(exe, "-test.run=^TestPausedHolderLosesLock$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), holderEnv+"="+dsn)
	in, _ := cmd.StdinPipe()
	outPipe, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGCONT)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	out := bufio.NewScanner(outPipe)
	expect := func(want string) {
		t.Helper()
		for out.Scan() {
			if line := out.Text(); strings.HasPrefix(line, "holder: ") {
				if line != "holder: "+want {
					t.Fatalf("lock holder process said %q, want %q", line, want)
				}
				return
			}
		}
		t.Fatalf("lock holder process ended before saying %q: %v", want, out.Err())
	}
	expect("locked")
	lk := st.(store.Locker)
	if l, ok, err := lk.TryLock(t.Context(), "paused"); err != nil || ok {
		if l != nil {
			l.Unlock()
		}
		t.Fatalf("TryLock while the other process holds the lock = %v, %v", ok, err)
	}
	if err := cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	paused := time.Now()
	var l store.Lock
	testenv.WaitFor(t, store.LockTTL+5*time.Second, "the paused holder's lock to be free", func() bool {
		var ok bool
		l, ok, err = lk.TryLock(t.Context(), "paused")
		if err != nil {
			t.Fatal(err)
		}
		return ok
	})
	defer l.Unlock()
	t.Logf("lock taken %v after its holder paused (LockTTL %v)", time.Since(paused).Round(time.Millisecond), store.LockTTL)
	if err := cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(in, "held?")
	expect("lost")
	if err := l.Held(t.Context()); err != nil {
		t.Fatalf("the new holder's lock: %v", err)
	}
}

// holdLock is the holder process: it takes the lock, says so, and answers
// each line on stdin with whether it still holds it.
func holdLock(t *testing.T, dsn string) {
	ctx := context.Background()
	st, err := Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	l, ok, err := st.(store.Locker).TryLock(ctx, "paused")
	if err != nil || !ok {
		t.Fatalf("holder: TryLock = %v, %v", ok, err)
	}
	defer l.Unlock()
	fmt.Println("holder: locked")
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		switch err := l.Held(ctx); {
		case err == nil:
			fmt.Println("holder: held")
		case errors.Is(err, store.ErrLockLost):
			fmt.Println("holder: lost")
		default:
			fmt.Println("holder: error", err)
		}
	}
}
