package testenv

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// childEnv makes the test binary, re-executed by crossProcess, act as one of
// several processes taking ports at once: "lock N" reserves N pairs, "swtpm
// N" starts N swtpm instances. It prints each first port, then "ready", and
// holds everything until its stdin closes.
const childEnv = "TESTENV_PORTS_CHILD"

// TestReservePairAcrossProcesses has four processes reserve 32 pairs out of
// 48 at the same time: no pair may be handed out twice. Without the
// cross-process lock every process would see the same pairs as free.
func TestReservePairAcrossProcesses(t *testing.T) {
	if runChild(t) {
		return
	}
	ports := crossProcess(t, "lock 8", 4, 48)
	if len(ports) != 32 {
		t.Fatalf("got %d pairs, want 32", len(ports))
	}
}

// TestSWTPMPortsAcrossProcesses starts 24 swtpm instances from four
// processes at once in a range of 32 pairs; every one must start, on a pair
// of its own.
func TestSWTPMPortsAcrossProcesses(t *testing.T) {
	if runChild(t) {
		return
	}
	RequireSWTPM(t)
	ports := crossProcess(t, "swtpm 6", 4, 32)
	if len(ports) != 24 {
		t.Fatalf("got %d swtpm instances, want 24", len(ports))
	}
}

func TestParsePortRange(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     [2]int
		ok       bool
	}{
		{"even bounds", "20000-20009", [2]int{20000, 20010}, true},
		{"odd low rounds up", "20001-20005", [2]int{20002, 20006}, true},
		{"odd high drops last", "20000-20002", [2]int{20000, 20002}, true},
		{"one pair", "20000-20001", [2]int{20000, 20002}, true},
		{"no pair", "20001-20002", [2]int{}, false},
		{"privileged", "80-2000", [2]int{}, false},
		{"too high", "65000-70000", [2]int{}, false},
		{"not a range", "20000", [2]int{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parsePortRange(tc.in)
			if (err == nil) != tc.ok || got != tc.want {
				t.Errorf("parsePortRange(%q) = %v, %v; want %v, ok %v", tc.in, got, err, tc.want, tc.ok)
			}
		})
	}
}

// crossProcess runs procs copies of the test binary as childEnv=what in a
// random window of the default range holding pairs pairs, waits until all
// hold their ports, lets them go and returns every first port, each checked
// to be handed out once.
func crossProcess(t *testing.T, what string, procs, pairs int) []int {
	t.Helper()
	r := defaultPortRange()
	low := r[0] + 2*rand.IntN((r[1]-r[0])/2-pairs)
	window := fmt.Sprintf("%d-%d", low, low+2*pairs-1)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	results := make(chan childResult, procs)
	var stdins []io.Closer
	var wg sync.WaitGroup
	for i := range procs {
		cmd := exec.Command(exe, "-test.run=^"+t.Name()+"$")
		cmd.Env = append(os.Environ(), childEnv+"="+what, PortsEnv+"="+window)
		in, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		stdins = append(stdins, in)
		wg.Add(1)
		go func() { defer wg.Done(); results <- runChildProcess(cmd, i) }()
	}
	defer func() {
		for _, in := range stdins {
			in.Close()
		}
		wg.Wait()
	}()
	seen := map[int]int{}
	for range procs {
		var res childResult
		select {
		case res = <-results:
		case <-time.After(2 * time.Minute):
			t.Fatalf("children did not all hold their ports within 2 minutes (%s, ports %s)", what, window)
		}
		if res.err != nil {
			t.Fatalf("child %d (%s, ports %s): %v", res.child, what, window, res.err)
		}
		for _, p := range res.ports {
			if other, dup := seen[p]; dup {
				t.Errorf("port %d handed to child %d and child %d", p, other, res.child)
			}
			seen[p] = res.child
		}
	}
	ports := make([]int, 0, len(seen))
	for p := range seen {
		ports = append(ports, p)
	}
	return ports
}

type childResult struct {
	child int
	ports []int
	err   error
}

// runChildProcess starts cmd and returns once it said "ready" (its ports
// are held) or failed.
func runChildProcess(cmd *exec.Cmd, child int) childResult {
	res := childResult{child: child}
	out, err := cmd.StdoutPipe()
	if err != nil {
		res.err = err
		return res
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		res.err = err
		return res
	}
	var lines []string
	for s := bufio.NewScanner(out); s.Scan(); {
		line := s.Text()
		lines = append(lines, line)
		if port, ok := strings.CutPrefix(line, "port "); ok {
			n, _ := strconv.Atoi(port)
			res.ports = append(res.ports, n)
		}
		if line == "ready" {
			go func() { _, _ = io.Copy(io.Discard, out); _ = cmd.Wait() }()
			return res
		}
	}
	res.err = fmt.Errorf("exited before ready: %v\n%s\n%s", cmd.Wait(), strings.Join(lines, "\n"), stderr.String())
	return res
}

// runChild acts as a child if childEnv says so, and reports whether it did.
func runChild(t *testing.T) bool {
	what, n, ok := strings.Cut(os.Getenv(childEnv), " ")
	if !ok {
		return false
	}
	count, err := strconv.Atoi(n)
	if err != nil {
		t.Fatal(err)
	}
	var ports []int
	switch what {
	case "lock":
		ports = holdPairs(t, count)
	case "swtpm":
		ports = holdSWTPMs(t, count)
	default:
		t.Fatalf("%s=%q", childEnv, what)
	}
	for _, p := range ports {
		fmt.Printf("port %d\n", p)
	}
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin) // until the parent closes it
	return true
}

func holdPairs(t *testing.T, n int) []int {
	var ports []int
	for range n {
		p, err := reservePair()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.release)
		ports = append(ports, p.Port)
	}
	return ports
}

// holdSWTPMs starts n swtpm instances at once.
func holdSWTPMs(t *testing.T, n int) []int {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tpms := make([]*TPM, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		dir := t.TempDir()
		wg.Add(1)
		go func() { defer wg.Done(); tpms[i], errs[i] = Start(ctx, dir, SharedIdentity()) }()
	}
	wg.Wait()
	var ports []int
	for i, tp := range tpms {
		if errs[i] != nil {
			t.Errorf("swtpm %d: %v", i, errs[i])
			continue
		}
		t.Cleanup(func() {
			if err := tp.Stop(); err != nil {
				t.Error(err)
			}
		})
		ports = append(ports, tp.Port)
	}
	if t.Failed() {
		t.FailNow()
	}
	return ports
}
