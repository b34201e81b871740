package hsm

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/ThalesGroup/crypto11"
)

// conn is one crypto11 context. A lost conn is never reused: recovery builds
// a new one, and Keys notice the new pointer and look themselves up again.
type conn struct {
	ctx    *crypto11.Context
	closed chan struct{} // closed once ctx.Close has returned
}

func (c *conn) close() {
	_ = c.ctx.Close()
	close(c.closed)
}

func (c *conn) probe() (struct{}, error) {
	r, err := c.ctx.NewRandomReader()
	if err == nil {
		_, err = r.Read(make([]byte, 1))
	}
	return struct{}{}, err
}

// conn returns the current connection, reconnecting if it is lost.
func (h *HSM) conn(ctx context.Context, op, key string) (*conn, error) {
	if c := h.cur.Load(); c != nil {
		return c, nil
	}
	return h.reconnect(ctx, op, key)
}

// fail turns an error from an operation on c into an *Error, and drops c if
// the error shows its sessions are gone.
func (h *HSM) fail(c *conn, op, key string, err error) error {
	if err == nil {
		return nil
	}
	if isLost(err) {
		h.lose(c, err)
	}
	return &Error{Op: op, Key: key, Kind: kindOf(err), Err: err}
}

// lose retires c, once, and closes it in the background: crypto11's Close
// waits for sessions in use.
func (h *HSM) lose(c *conn, cause error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.cur.CompareAndSwap(c, nil) {
		return
	}
	h.prev, h.lastErr = c, cause
	h.met.setUp(false)
	h.log.Warn("hsm: connection lost; reconnecting on next use", "cause", cause.Error())
	go c.close()
}

// reconnect waits, within ctx, for a reconnect attempt: the running one, or a
// new one if the backoff allows.
func (h *HSM) reconnect(ctx context.Context, op, key string) (*conn, error) {
	done, err := h.startDial(op, key)
	if err != nil {
		return nil, err
	}
	select {
	case <-done:
	case <-ctx.Done():
		return nil, &Error{Op: op, Key: key, Kind: ErrUnavailable, Err: fmt.Errorf("waiting for reconnect: %w", ctx.Err())}
	}
	if c := h.cur.Load(); c != nil {
		return c, nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return nil, h.downErr(op, key)
}

var closedChan = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

func (h *HSM) startDial(op, key string) (<-chan struct{}, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case h.closed:
		return nil, &Error{Op: op, Key: key, Err: errClosed}
	case h.cur.Load() != nil:
		return closedChan, nil
	case h.dialing != nil:
		return h.dialing, nil
	case h.fatal != nil || time.Now().Before(h.next):
		return nil, h.downErr(op, key)
	}
	h.dialing = make(chan struct{})
	go h.dial(h.dialing, h.prev)
	return h.dialing, nil
}

// downErr explains why the handle is down; h.mu must be held.
func (h *HSM) downErr(op, key string) error {
	if h.fatal != nil {
		return &Error{Op: op, Key: key, Kind: ErrBadPIN, Err: h.fatal}
	}
	return &Error{Op: op, Key: key, Kind: ErrUnavailable, Err: h.lastErr, RetryAfter: max(0, time.Until(h.next))}
}

// dial rebuilds the context once the lost one is closed: the module is only
// finalised and initialised again (which is what reconnects p11-kit-client
// and most network HSM clients) when no context uses it.
func (h *HSM) dial(done chan struct{}, prev *conn) {
	if prev != nil {
		<-prev.closed
	}
	c, err := h.configure()
	h.met.reconnect(err)
	h.mu.Lock()
	defer h.mu.Unlock()
	defer close(done)
	h.dialing = nil
	switch {
	case h.closed && err == nil:
		go closeContext(c)
	case h.closed:
	case err != nil:
		h.dialFailed(err)
	default:
		h.log.Info("hsm: reconnected")
		h.install(c)
	}
}

// dialFailed schedules the next attempt; h.mu must be held. A rejected PIN
// stops reconnecting: retrying it would lock the token.
func (h *HSM) dialFailed(err error) {
	h.lastErr = err
	if isBadPIN(err) {
		h.fatal = err
		h.log.Error("hsm: token rejected the PIN on reconnect; giving up until restart", "cause", err.Error())
		return
	}
	h.delay = min(max(2*h.delay, h.opts.backoffMin), h.opts.backoffMax)
	h.next = time.Now().Add(jitter(h.delay))
	h.log.Warn("hsm: reconnect failed", "retry_in", h.delay, "cause", err.Error())
}

// jitter spreads d over [0.8d, 1.2d] so replicas do not retry in step.
func jitter(d time.Duration) time.Duration {
	return d*4/5 + rand.N(d*2/5+1)
}

// install makes ctx the current connection; h.mu must be held.
func (h *HSM) install(ctx *crypto11.Context) {
	if h.closed {
		go closeContext(ctx)
		return
	}
	h.cur.Store(&conn{ctx: ctx, closed: make(chan struct{})})
	h.delay, h.next, h.lastErr = 0, time.Time{}, nil
	h.met.setUp(true)
}
