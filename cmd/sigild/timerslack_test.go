package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// Every thread of sigild, the runtime's monitor included (it is started
// before any Go code), has the timer slack SIGILD_TIMER_SLACK_NS asks
// for, 1 ms unless it is set; 0 leaves the slack sigild inherited.
func TestTimerSlack(t *testing.T) {
	t.Parallel()
	const inherited = 300000
	for _, tt := range []struct {
		env  []string
		want string
	}{
		{nil, "1000000"},
		{[]string{"SIGILD_TIMER_SLACK_NS=250000"}, "250000"},
		{[]string{"SIGILD_TIMER_SLACK_NS=0"}, fmt.Sprint(inherited)},
	} {
		got := threadSlacks(t, inherited, tt.env)
		if len(got) < 2 {
			t.Fatalf("%v: %d threads; want the monitor's and more", tt.env, len(got))
		}
		for tid, slack := range got {
			if slack != tt.want {
				t.Errorf("%v: thread %s has a timer slack of %s ns, want %s", tt.env, tid, slack, tt.want)
			}
		}
	}
}

// threadSlacks runs this test binary as TestThreadSlacks with env, from a
// thread whose slack is inherited ns, and returns the timer slack of each
// of its threads.
func threadSlacks(t *testing.T, inherited int, env []string) map[string]string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestThreadSlacks$")
	cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "SIGILD_TIMER_SLACK_NS=") })
	cmd.Env = append(cmd.Env, append(env, "SIGILD_TEST_THREAD_SLACKS=1")...)
	runtime.LockOSThread() // the child inherits this thread's slack
	defer runtime.UnlockOSThread()
	before, err := unix.PrctlRetInt(unix.PR_GET_TIMERSLACK, 0, 0, 0, 0)
	if err == nil {
		err = unix.Prctl(unix.PR_SET_TIMERSLACK, uintptr(inherited), 0, 0, 0)
	}
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.CombinedOutput()
	if err := unix.Prctl(unix.PR_SET_TIMERSLACK, uintptr(before), 0, 0, 0); err != nil {
		t.Fatal(err)
	}
	if err != nil {
		t.Fatalf("%v: %v\n%s", env, err, out)
	}
	slacks := map[string]string{}
	for line := range strings.Lines(string(out)) {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "slack "); ok {
			tid, slack, _ := strings.Cut(rest, "=")
			slacks[tid] = slack
		}
	}
	return slacks
}

// TestThreadSlacks prints the timer slack of every thread of this process,
// for TestTimerSlack, which runs it.
func TestThreadSlacks(t *testing.T) {
	if os.Getenv("SIGILD_TEST_THREAD_SLACKS") == "" {
		t.Skip("run by TestTimerSlack")
	}
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		slack, err := os.ReadFile("/proc/" + task.Name() + "/timerslack_ns")
		if err != nil {
			t.Fatal(err)
		}
		fmt.Printf("slack %s=%s\n", task.Name(), strings.TrimSpace(string(slack)))
	}
}

// A SIGILD_TIMER_SLACK_NS that is not nanoseconds from 0 to 100 ms keeps
// sigild from starting, with an error that names it.
func TestCheckTimerSlack(t *testing.T) {
	for v, ok := range map[string]bool{
		"0": true, "1000000": true, "100000000": true,
		"": false, "1ms": false, "-1": false, " 5": false, "5 ": false, "+5": false,
		"100000001": false, "99999999999999999999999": false,
	} {
		t.Setenv("SIGILD_TIMER_SLACK_NS", v)
		err := checkTimerSlack()
		if (err == nil) != ok {
			t.Errorf("SIGILD_TIMER_SLACK_NS=%q: %v, want ok %v", v, err, ok)
		}
		if err != nil && !strings.Contains(err.Error(), "SIGILD_TIMER_SLACK_NS") {
			t.Errorf("error does not name the variable: %v", err)
		}
	}
}
