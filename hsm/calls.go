package hsm

import "context"

// PKCS#11 calls cannot be interrupted. A bounded call therefore runs on
// another goroutine and the caller stops waiting at its deadline; the call
// itself finishes, or hangs, in the background.

// result carries the outcome of a call.
type result[T any] struct {
	v   T
	err error
}

// do runs f on a new goroutine and waits for it or for ctx; drop, if not
// nil, releases the result of a call finishing after ctx. For calls off the
// signing path.
func do[T any](ctx context.Context, f func() (T, error), drop func(T)) (T, error) {
	ch := make(chan result[T], 1)
	go func() {
		v, err := f()
		ch <- result[T]{v, err}
	}()
	select {
	case r := <-ch:
		return r.v, r.err
	case <-ctx.Done():
		if drop != nil {
			go dropLate(ch, drop)
		}
		var zero T
		return zero, ctx.Err()
	}
}

func dropLate[T any](ch <-chan result[T], drop func(T)) {
	if r := <-ch; r.err == nil {
		drop(r.v)
	}
}

// workers are long-lived goroutines for the signing path. A new goroutine
// per call measured several µs slower with SoftHSM (its stack grows again
// through crypto11 and cgo) — a few percent of a P-256 signature. Their
// number, the session pool size, also bounds how many calls can hang at
// once, where one goroutine per call would pile up behind a hung token.
type workers struct {
	jobs chan func()
	quit chan struct{}
}

func startWorkers(n int) *workers {
	w := &workers{jobs: make(chan func()), quit: make(chan struct{})}
	for range n {
		go w.loop()
	}
	return w
}

func (w *workers) loop() {
	for {
		select {
		case job := <-w.jobs:
			job()
		case <-w.quit:
			return
		}
	}
}

func (w *workers) stop() { close(w.quit) }

// run runs f on a worker and waits for it or for ctx.
func run[T any](ctx context.Context, w *workers, f func() (T, error)) (T, error) {
	var zero T
	ch := make(chan result[T], 1)
	job := func() {
		v, err := f()
		ch <- result[T]{v, err}
	}
	select {
	case w.jobs <- job:
	case <-ctx.Done():
		return zero, ctx.Err()
	case <-w.quit:
		return zero, errClosed
	}
	select {
	case r := <-ch:
		return r.v, r.err
	case <-ctx.Done():
		return zero, ctx.Err()
	}
}
