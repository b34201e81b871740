package main

// Timer slack: how late Linux may wake a thread from a timed sleep, so that
// it can serve several timers with one wake-up. A thread inherits its
// creator's slack, 50 µs unless something set it.
//
// Go's runtime monitor (sysmon) sleeps 20 µs between rounds while it keeps
// taking the processor from goroutines in long system and cgo calls, and
// sigild's HSM signatures (150 µs in SoftHSM) and SQLite COMMITs (an fsync)
// are such calls, thousands a second at load: the monitor then wakes every
// 70 µs or so. In a VM each wake-up is a timer exit and a context switch:
// in BenchmarkExchange (sigild on one CPU of a Firecracker VM) the monitor
// thread alone took 8 % of sigild's CPU, 3,500 wake-ups a second of 22 µs
// each, and every processor it took from a cgo call cost two more thread
// switches. With 1 ms of slack it wakes at most about a thousand times a
// second, and a cgo call that ends within the millisecond keeps its
// processor.
//
// The monitor is the runtime's first thread and is started before any Go
// code runs, so the slack is set by a C constructor, which runs before the
// runtime starts, for the main thread; every thread inherits it. The cost
// is timers: a timed sleep of any of sigild's threads may end up to the
// slack late. sigild's timers are timeouts and tickers of milliseconds or
// more.
//
// SIGILD_TIMER_SLACK_NS sets the slack in nanoseconds, up to 100 ms; 0
// leaves the inherited slack (systemd's TimerSlackNSec=, for one). sigild
// refuses to start if it is not such a number (checkTimerSlack); the
// constructor then leaves the slack alone.

/*
#include <errno.h>
#include <stdlib.h>
#include <sys/prctl.h>

#define SIGILD_TIMER_SLACK_DEFAULT 1000000L
#define SIGILD_TIMER_SLACK_MAX 100000000L

// sigild_timer_slack is the slack SIGILD_TIMER_SLACK_NS asks for: its
// value, the default if it is unset, or -1 if it is not a whole number of
// nanoseconds from 0 to the maximum.
static long sigild_timer_slack(void) {
	const char *v = getenv("SIGILD_TIMER_SLACK_NS");
	if (v == NULL) {
		return SIGILD_TIMER_SLACK_DEFAULT;
	}
	if (*v < '0' || *v > '9') {
		return -1;
	}
	char *end;
	errno = 0;
	unsigned long n = strtoul(v, &end, 10);
	if (errno != 0 || *end != '\0' || n > SIGILD_TIMER_SLACK_MAX) {
		return -1;
	}
	return (long)n;
}

__attribute__((constructor)) static void sigild_set_timer_slack(void) {
	long ns = sigild_timer_slack();
	if (ns > 0) {
		prctl(PR_SET_TIMERSLACK, (unsigned long)ns, 0, 0, 0);
	}
}
*/
import "C"

import (
	"fmt"
	"os"
)

// checkTimerSlack reports a SIGILD_TIMER_SLACK_NS the constructor could not
// use.
func checkTimerSlack() error {
	if C.sigild_timer_slack() < 0 {
		return fmt.Errorf("SIGILD_TIMER_SLACK_NS=%q: want a timer slack in nanoseconds, from 0 (leave it as inherited) to %d", os.Getenv("SIGILD_TIMER_SLACK_NS"), C.SIGILD_TIMER_SLACK_MAX)
	}
	return nil
}
