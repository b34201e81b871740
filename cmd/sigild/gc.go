package main

import (
	"os"
	"runtime/debug"
)

// gcPercent is sigild's GOGC, unless its environment sets GOGC.
//
// sigild's live heap is small (about 4 MB serving exchanges) and each
// exchange allocates about 40 KB, so at Go's default of 100 the heap goal
// was about 8 MB and the collector ran 4 times a second at half load and
// about 8 at full load (a runtime trace of BenchmarkExchange/sqlite). On
// one CPU each cycle's mark phase (6 ms on average, up to 17) shares the
// CPU with the requests in flight and makes some of them assist; the
// slowest 1 % of exchanges overlapped a mark phase twice as often as
// their length alone explains. At 200 the collector runs half as often,
// for about 4 MB more of heap (peak RSS 47–48 → 51–52 MB under load).
const gcPercent = 200

// tuneGC sets the collector's target for a serving sigild: the
// process's, so here and not in package daemon, whose tests and embedders
// keep their own.
func tuneGC() {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(gcPercent)
	}
}
