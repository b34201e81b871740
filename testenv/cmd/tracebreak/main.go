// Command tracebreak says where sigild's exchanges spend their wall time,
// from a runtime trace of sigild under load (BenchmarkExchange with
// SIGIL_BENCH_TRACE saves one of its half-load run):
//
//	tracebreak TRACE
//
// A request is the life of an HTTP/2 handler goroutine (runHandler); the
// handler hands it to a server worker (internal/server workers.go), which
// may hand the signature to an hsm worker. tracebreak follows the request
// across them and adds up, per request, the time its goroutines spent in
// each state, the waits told apart by their stacks:
//
//	queue    waiting for the SQLite group committer to start its batch
//	commit   waiting for its batch's COMMIT (and the fns before it)
//	runq     runnable, waiting for the one P (GOMAXPROCS 1)
//	hsm      waiting for a signature: the hsm worker, its cgo call
//	sql      in SQLite cgo calls on its own goroutine
//	cpu      running Go code
//	gc       how much of it overlapped a GC mark phase
//
// It prints the mean of each over the requests around p50, p90 and the
// slowest 1.5 %, then the durations of COMMITs, of the hand-off from a
// COMMIT to the next batch's BEGIN, and of hsm cgo calls, and how many of
// the slowest requests overlapped a COMMIT over 3 ms. A diagnostic for
// tuning, not a measure of record: the figures of record are the
// benchmark's own.
package main

import (
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"golang.org/x/exp/trace"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: tracebreak TRACE")
		os.Exit(2)
	}
	f, err := os.Open(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "tracebreak:", err)
		os.Exit(1)
	}
	defer f.Close()
	a := newAnalysis()
	if err := a.read(f); err != nil {
		fmt.Fprintln(os.Stderr, "tracebreak:", err)
		os.Exit(1)
	}
	a.print(os.Stdout)
}

// request is one exchange as the server saw it.
type request struct {
	start, end trace.Time
	in         map[string]float64 // ns per category
}

// interval is a stretch of trace time.
type interval struct{ from, to trace.Time }

// goroutine is what the analysis keeps of one goroutine.
type goroutine struct {
	state trace.GoState
	since trace.Time
	stack string   // where it blocked or entered a syscall
	kind  string   // "handler", "worker", "hsm" or ""
	req   *request // the request it works for, if any
}

type analysis struct {
	gs       map[trace.GoID]*goroutine
	reqs     []*request
	marks    []interval // GC mark phases
	commits  []interval // SQLite COMMITs
	calls    map[string][]float64
	markFrom trace.Time
	lastEnd  trace.Time // of the last COMMIT
}

func newAnalysis() *analysis {
	return &analysis{gs: map[trace.GoID]*goroutine{}, calls: map[string][]float64{}}
}

func (a *analysis) read(r io.Reader) error {
	tr, err := trace.NewReader(r)
	if err != nil {
		return fmt.Errorf("read trace: %w", err)
	}
	for {
		ev, err := tr.ReadEvent()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read trace: %w", err)
		}
		a.event(ev)
	}
}

const markPhase = "GC concurrent mark phase"

func (a *analysis) event(ev trace.Event) {
	switch ev.Kind() {
	case trace.EventRangeBegin:
		if ev.Range().Name == markPhase {
			a.markFrom = ev.Time()
		}
	case trace.EventRangeEnd:
		if ev.Range().Name == markPhase && a.markFrom != 0 {
			a.marks = append(a.marks, interval{a.markFrom, ev.Time()})
		}
	case trace.EventStateTransition:
		if st := ev.StateTransition(); st.Resource.Kind == trace.ResourceGoroutine {
			a.transition(ev, st)
		}
	}
}

// transition accounts the state a goroutine leaves, then follows requests
// from goroutine to goroutine.
func (a *analysis) transition(ev trace.Event, st trace.StateTransition) {
	g := a.gs[st.Resource.Goroutine()]
	if g == nil {
		g = &goroutine{}
		a.gs[st.Resource.Goroutine()] = g
	}
	from, to := st.Goroutine()
	now := ev.Time()
	if g.since != 0 {
		a.account(g, now)
		if from == trace.GoSyscall {
			a.syscallEnded(g, now)
		}
	}
	stk := stackOf(st.Stack)
	a.follow(g, ev, from, to, stk, now)
	if to == trace.GoWaiting || to == trace.GoSyscall {
		g.stack = stk
	}
	g.state, g.since = to, now
}

// follow starts, hands over and ends requests.
func (a *analysis) follow(g *goroutine, ev trace.Event, from, to trace.GoState, stk string, now trace.Time) {
	by := a.gs[ev.Goroutine()]
	switch {
	case from == trace.GoNotExist && strings.Contains(stk, "runHandler"):
		r := &request{start: now, in: map[string]float64{}}
		g.kind, g.req = "handler", r
		a.reqs = append(a.reqs, r)
	case to == trace.GoNotExist && g.kind == "handler" && g.req != nil:
		g.req.end, g.req = now, nil
	case to == trace.GoRunnable && by != nil && by.kind == "handler" && strings.Contains(stackOf(ev.Stack()), "server.(*workers).start"):
		g.kind, g.req = "worker", by.req
	case to == trace.GoRunnable && by != nil && by.req != nil && isHSMHandOff(stackOf(ev.Stack())):
		g.kind, g.req = "hsm", by.req
	case to == trace.GoWaiting && second(stk, "server.(*workers).work"):
		g.kind, g.req = "worker", nil
	case to == trace.GoWaiting && second(stk, "hsm.(*workers).loop"):
		g.kind, g.req = "hsm", nil
	}
}

// isHSMHandOff: a stack handing a call to an hsm worker (not one
// returning its result).
func isHSMHandOff(stk string) bool {
	return strings.Contains(stk, "hsm.run") && !strings.Contains(stk, "func1")
}

// account adds the time g spent in its last state to its request.
func (a *analysis) account(g *goroutine, now trace.Time) {
	// The handler waits for its worker, the worker for the hsm worker:
	// the waiting side's time counts.
	if g.req == nil || g.kind == "hsm" || (g.kind == "handler" && g.state == trace.GoWaiting) {
		return
	}
	g.req.in[category(g.state, g.stack)] += float64(now - g.since)
}

// category names what a goroutine in state s, blocked at stk, waits for.
func category(s trace.GoState, stk string) string {
	switch {
	case s == trace.GoRunning:
		return "cpu"
	case s == trace.GoRunnable:
		return "runq"
	case s == trace.GoSyscall && strings.Contains(stk, "sqlite3"):
		return "sql"
	case strings.Contains(stk, "hsm.run") || strings.Contains(stk, "slots).acquire"):
		return "hsm"
	case strings.Contains(stk, "txCall).await"):
		return "queue"
	case strings.Contains(stk, "sqliteStore).Tx"):
		return "commit"
	}
	return "other"
}

// syscallEnded records COMMITs, hand-offs and hsm calls.
func (a *analysis) syscallEnded(g *goroutine, now trace.Time) {
	took := float64(now - g.since)
	switch {
	case strings.Contains(g.stack, "SQLiteTx).Commit") && strings.Contains(g.stack, "exec_no_args"):
		a.calls["COMMIT"] = append(a.calls["COMMIT"], took)
		a.commits = append(a.commits, interval{g.since, now})
		a.lastEnd = now
	case strings.Contains(g.stack, "committer).commit") && strings.Contains(g.stack, "exec_no_args") && a.lastEnd != 0:
		a.calls["COMMIT end to next batch's BEGIN end"] = append(a.calls["COMMIT end to next batch's BEGIN end"], float64(now-a.lastEnd))
		a.lastEnd = 0
	case g.kind == "hsm" && strings.Contains(g.stack, "pkcs11"):
		a.calls["hsm cgo call"] = append(a.calls["hsm cgo call"], took)
	}
}

// stackOf writes a stack as "func:line" frames, innermost first.
func stackOf(s trace.Stack) string {
	var b strings.Builder
	for f := range s.Frames() {
		fmt.Fprintf(&b, "%s:%d ", f.Func, f.Line)
	}
	return b.String()
}

// second reports whether the second frame of stk contains fn: where a
// goroutine idles (its first frame is the runtime's select).
func second(stk, fn string) bool {
	fs := strings.Fields(stk)
	return len(fs) > 1 && strings.Contains(fs[1], fn)
}

var categories = []string{"queue", "commit", "runq", "hsm", "sql", "cpu", "other"}

func (a *analysis) print(w io.Writer) {
	var done []*request
	for _, r := range a.reqs {
		if r.end != 0 {
			done = append(done, r)
		}
	}
	if len(done) == 0 {
		fmt.Fprintln(w, "no complete requests in the trace")
		return
	}
	slices.SortFunc(done, func(x, y *request) int { return int((x.end - x.start) - (y.end - y.start)) })
	n := len(done)
	fmt.Fprintf(w, "%d requests, %d GC mark phases; mean ms per request:\n%-16s %6s", n, len(a.marks), "", "span")
	for _, c := range categories {
		fmt.Fprintf(w, " %6s", c)
	}
	fmt.Fprintf(w, " %6s\n", "gc")
	for _, b := range []struct {
		name   string
		lo, hi float64
	}{{"p50 (45-55 %)", .45, .55}, {"p90 (88-92 %)", .88, .92}, {"p99 (top 1.5 %)", .985, 1}, {"all", 0, 1}} {
		a.printBucket(w, b.name, done[int(b.lo*float64(n)):int(b.hi*float64(n))])
	}
	slowest := done[int(.985*float64(n)):]
	fmt.Fprintf(w, "slowest 1.5 %% overlapping a COMMIT over 3 ms: %d of %d\n", overlapping(slowest, a.commits, 3e6), len(slowest))
	for _, name := range []string{"COMMIT", "COMMIT end to next batch's BEGIN end", "hsm cgo call"} {
		printDist(w, name, a.calls[name])
	}
}

func (a *analysis) printBucket(w io.Writer, name string, rs []*request) {
	var span, gc float64
	sum := map[string]float64{}
	for _, r := range rs {
		span += float64(r.end - r.start)
		gc += overlap(interval{r.start, r.end}, a.marks)
		for c, v := range r.in {
			sum[c] += v
		}
	}
	k := float64(len(rs)) * 1e6
	fmt.Fprintf(w, "%-16s %6.2f", name, span/k)
	for _, c := range categories {
		fmt.Fprintf(w, " %6.2f", sum[c]/k)
	}
	fmt.Fprintf(w, " %6.2f\n", gc/k)
}

// overlap is how much of x lies in ivs.
func overlap(x interval, ivs []interval) float64 {
	var t float64
	for _, iv := range ivs {
		if lo, hi := max(x.from, iv.from), min(x.to, iv.to); hi > lo {
			t += float64(hi - lo)
		}
	}
	return t
}

// overlapping counts the requests that overlap an interval longer than d.
func overlapping(rs []*request, ivs []interval, d trace.Time) int {
	n := 0
	for _, r := range rs {
		if slices.ContainsFunc(ivs, func(iv interval) bool {
			return iv.to-iv.from > d && iv.to > r.start && iv.from < r.end
		}) {
			n++
		}
	}
	return n
}

func printDist(w io.Writer, name string, v []float64) {
	if len(v) == 0 {
		return
	}
	slices.Sort(v)
	at := func(p float64) float64 { return v[int(p*float64(len(v)-1))] / 1e6 }
	fmt.Fprintf(w, "%s: n=%d p50 %.2f p90 %.2f p99 %.2f max %.2f ms\n", name, len(v), at(.5), at(.9), at(.99), at(1))
}
