package hsm

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThalesGroup/crypto11"
)

// HSM is an open PKCS#11 token. It is safe for concurrent use. When the
// token or its sessions are lost it reports ErrUnavailable and rebuilds its
// PKCS#11 context by itself on later calls; Keys handed out before keep
// working afterwards.
type HSM struct {
	uri  URI // without the PIN
	pin  string
	opts *options
	log  *slog.Logger
	met  *metrics
	work *workers

	cur atomic.Pointer[conn] // nil while lost or closed

	mu      sync.Mutex    // guards the fields below
	dialing chan struct{} // closed when the running reconnect attempt ends
	prev    *conn         // last lost connection, maybe still closing
	lastErr error         // why the handle is down
	next    time.Time     // no reconnect attempt before
	delay   time.Duration // current backoff
	fatal   error         // PIN rejected on reconnect: stop trying
	closed  bool

	keyMu sync.Mutex // serialises Generate and Rotate in this process
}

// Open opens the token named by an RFC 7512 pkcs11: URI (see URI) and logs
// in. The PIN comes from the URI's pin-source file or from the environment
// variable named by WithPINEnv. Errors are *Error values matching ErrBadPIN,
// ErrTokenNotFound or ErrUnavailable where those apply, ErrInvalidURI for a
// bad URI; none contains the PIN. A network HSM client whose server is down
// may list no tokens at all, so at Open an unreachable token can show as
// ErrTokenNotFound; after Open, losing it shows as ErrUnavailable.
func Open(ctx context.Context, rawURI string, opts ...Option) (*HSM, error) {
	u, err := ParseURI(rawURI)
	if err != nil {
		return nil, err
	}
	o, err := newOptions(opts)
	if err != nil {
		return nil, err
	}
	pin, err := resolvePIN(u, o)
	if err != nil {
		return nil, err
	}
	h := &HSM{uri: *u, pin: pin, opts: o, log: o.logger.With("hsm", u.tokenDesc())}
	if err := h.start(ctx); err != nil {
		return nil, err
	}
	h.work = startWorkers(o.maxSessions)
	return h, nil
}

func (h *HSM) start(ctx context.Context) error {
	c, err := do(ctx, h.configure, closeContext)
	if err != nil {
		return &Error{Op: "open", Kind: kindOf(err), Err: fmt.Errorf("%s via %s: %w", h.uri.tokenDesc(), h.uri.ModulePath, err)}
	}
	if h.met, err = newMetrics(h.opts.registerer); err != nil {
		closeContext(c)
		return fmt.Errorf("hsm: register metrics: %w", err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.install(c)
	return nil
}

// configure builds a crypto11 context; the pool is bounded in size and wait.
func (h *HSM) configure() (*crypto11.Context, error) {
	return crypto11.Configure(&crypto11.Config{
		Path:            h.uri.ModulePath,
		TokenLabel:      h.uri.Token,
		TokenSerial:     h.uri.Serial,
		Pin:             h.pin,
		MaxSessions:     h.opts.maxSessions,
		PoolWaitTimeout: h.opts.sessionWait,
	})
}

func closeContext(c *crypto11.Context) { _ = c.Close() }

func (u *URI) tokenDesc() string {
	if u.Token != "" {
		return "token " + quote(u.Token)
	}
	return "serial " + quote(u.Serial)
}

// Close releases the token (closing its sessions ends the login), waiting
// for running operations. Keys from this handle fail afterwards.
func (h *HSM) Close() error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	c := h.cur.Swap(nil)
	h.mu.Unlock()
	h.work.stop()
	h.met.unregister(h.opts.registerer)
	if c == nil {
		return nil
	}
	return c.ctx.Close()
}

// Healthy reports whether the token answers, with one cheap round trip
// (C_GenerateRandom of one byte on a pooled session), bounded by ctx and
// WithTimeout. While the handle is down it triggers a reconnect attempt
// (subject to backoff), so a readiness probe that calls it also drives
// recovery. The error matches ErrUnavailable when the token is unreachable.
func (h *HSM) Healthy(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, h.opts.timeout)
	defer cancel()
	c, err := h.conn(ctx, "health", "")
	if err != nil {
		return err
	}
	_, err = run(ctx, h.work, c.probe)
	return h.fail(c, "health", "", err)
}
