package server

import (
	"fmt"
	"net/http"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// Every HTTP request runs on a goroutine that net/http (its HTTP/2 server:
// one per stream) starts for it with the runtime's smallest stack, and the
// token exchange's path (form and JSON parsing, JWS, policy, cgo into the
// HSM and SQLite) is deep: each request grew its new stack by copying two
// or three times (runtime.newstack was 4 % of sigild's CPU per exchange;
// the runtime's adaptive starting size follows the average of all
// goroutines, most of them idle and shallow). workers runs the handler
// instead on a goroutine kept from an earlier request, whose stack has
// already grown; grpc-go's NumStreamWorkers and this module's hsm workers
// do the same for the same reason.
//
// A request finding no idle worker starts a new one, so a slow or
// streaming request (the revocation feed) never waits for another; at most
// maxWorkers are kept, each until it has been idle for workerIdle.
type workers struct {
	jobs chan *job
	kept atomic.Int32
	max  int32
	idle time.Duration
}

// Defaults for the kept workers: more than the concurrent requests of a
// busy replica, few enough that idle ones cost little (a stack each,
// which the garbage collector shrinks while they wait).
const (
	maxWorkers = 128
	workerIdle = 30 * time.Second
)

func newWorkers(max int, idle time.Duration) *workers {
	return &workers{jobs: make(chan *job), max: int32(max), idle: idle}
}

// job is one request for a worker; done carries the handler's panic, if
// it panicked, back to the request's own goroutine.
type job struct {
	h    http.Handler
	w    http.ResponseWriter
	r    *http.Request
	done chan *handlerPanic
}

var jobs = sync.Pool{New: func() any { return &job{done: make(chan *handlerPanic, 1)} }}

// handler returns h run on the workers. A panic in h is re-raised on the
// request's goroutine, where net/http handles it as always (aborting the
// stream; http.ErrAbortHandler unchanged, anything else logged with the
// worker's stack).
func (p *workers) handler(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		j := jobs.Get().(*job)
		j.h, j.w, j.r = h, w, r
		p.start(j)
		hp := <-j.done
		*j = job{done: j.done}
		jobs.Put(j)
		if hp != nil {
			hp.repanic()
		}
	})
}

// start hands j to an idle worker, or to a new goroutine when none is
// idle: kept as a worker while fewer than max are, else gone after j.
func (p *workers) start(j *job) {
	select {
	case p.jobs <- j:
		return
	default:
	}
	if p.kept.Add(1) > p.max {
		p.kept.Add(-1)
		go j.run()
		return
	}
	go p.work(j)
}

// work runs j and then whatever jobs come, until none has for p.idle (so
// it ends between idle and twice idle after its last job). The timer is
// not reset per job, which cost a timer update on every request: when it
// fires, the worker ends only if it ran nothing since it last fired.
func (p *workers) work(j *job) {
	defer p.kept.Add(-1)
	t := time.NewTimer(p.idle)
	defer t.Stop()
	j.run()
	ran := true // since t last fired
	for {
		select {
		case j = <-p.jobs:
			j.run()
			ran = true
		case <-t.C:
			if !ran {
				return
			}
			ran = false
			t.Reset(p.idle)
		}
	}
}

// run serves the request and reports on done; after the send j belongs
// to the request's goroutine again.
func (j *job) run() {
	var hp *handlerPanic
	defer func() { j.done <- hp }()
	defer func() {
		if v := recover(); v != nil {
			hp = &handlerPanic{value: v, stack: debug.Stack()}
		}
	}()
	j.h.ServeHTTP(j.w, j.r)
}

// handlerPanic is a handler's panic on a worker, with the worker's stack.
type handlerPanic struct {
	value any
	stack []byte
}

// repanic raises the panic again on the request's goroutine:
// http.ErrAbortHandler as itself, so that net/http aborts silently as it
// does for it, anything else with the stack where it happened.
func (hp *handlerPanic) repanic() {
	if hp.value == http.ErrAbortHandler {
		panic(http.ErrAbortHandler)
	}
	panic(hp)
}

func (hp *handlerPanic) String() string {
	return fmt.Sprintf("%v\n\nworker goroutine stack:\n%s", hp.value, hp.stack)
}
