package policy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultPollInterval is how often an [Engine] checks its directory for
// changes unless [WithPollInterval] says otherwise.
const DefaultPollInterval = 2 * time.Second

// Engine holds the current policy set of a directory and replaces it when
// the directory changes: on [Engine.Reload] (for SIGHUP) and when polling
// sees different content. A set that fails to load never replaces the
// active one. An Engine is safe for concurrent use.
//
// Polling reads the *.cedar files and compares their content hash with the
// last one it tried. To change several files at once, switch a symlink to a
// complete new directory rather than editing files in place, or an
// intermediate state may be loaded if it happens to validate.
type Engine struct {
	dir     string
	current atomic.Pointer[Set]
	log     *slog.Logger
	onLoad  func(*Set)
	gate    func(context.Context, *Set) error
	active  func(context.Context, *Set)
	poll    time.Duration

	mu    sync.Mutex // serializes loads; guards tried and held
	tried string     // content version last loaded or rejected
	held  bool       // the gate held the set offered last
}

// ErrHeld: a loaded set did not pass the [WithGate] function and does not
// take effect; the active set stays. The gate's error, wrapped, says why
// and what releases it.
var ErrHeld = errors.New("policy set held")

// An Option configures an [Engine].
type Option func(*Engine)

// WithLogger logs loads, unchanged reloads and rejected sets to l. Without
// it the Engine does not log.
func WithLogger(l *slog.Logger) Option {
	return func(e *Engine) { e.log = l }
}

// WithPollInterval sets how often the directory is checked for changes;
// d <= 0 turns polling off, leaving [Engine.Reload] as the only trigger.
func WithPollInterval(d time.Duration) Option {
	return func(e *Engine) { e.poll = d }
}

// WithOnLoad calls fn with every policy set the Engine activates, the
// first one included, before any decision uses it; use it to write a
// "policy set loaded" audit entry ([Set.Version], [Set.Len]). fn runs with
// the Engine's load lock held and must not call [Engine.Reload].
func WithOnLoad(fn func(*Set)) Option {
	return func(e *Engine) { e.onLoad = fn }
}

// WithGate makes every loaded set pass fn before it takes effect, the
// first one included. An error holds the set: the active one stays, the
// error is returned (from [Engine.Reload], or [NewEngine] for the first
// set), and polling offers the held set to fn again at every interval, so
// that it takes effect once fn lets it (an operator confirmed it). fn runs
// with the Engine's load lock held, before [WithOnLoad]'s function, and
// does its own logging of what it holds.
func WithGate(fn func(context.Context, *Set) error) Option {
	return func(e *Engine) { e.gate = fn }
}

// WithOnActive calls fn with every set right after it took effect (every
// decision from then on uses it), with the load lock held: for work that
// must see the new set in force, such as re-evaluating what the old one
// permitted.
func WithOnActive(fn func(context.Context, *Set)) Option {
	return func(e *Engine) { e.active = fn }
}

// NewEngine loads the policy set in dir and, unless polling is turned off,
// watches dir until ctx is done. It fails if the first load fails.
func NewEngine(ctx context.Context, dir string, opts ...Option) (*Engine, error) {
	e := &Engine{dir: dir, log: slog.New(slog.DiscardHandler), poll: DefaultPollInterval}
	for _, opt := range opts {
		opt(e)
	}
	if err := e.load(ctx); err != nil {
		return nil, err
	}
	if e.poll > 0 {
		go e.watch(ctx)
	}
	return e, nil
}

// Set returns the active policy set.
func (e *Engine) Set() *Set { return e.current.Load() }

// Decide evaluates req against the active policy set.
func (e *Engine) Decide(req Request) Decision { return e.Set().Decide(req) }

// Reload loads the directory again and activates the result if it differs
// from the active set. On error the active set stays; the error names every
// problem (see [LoadError]).
func (e *Engine) Reload() error {
	return e.load(context.Background())
}

// load reads, compiles and activates the policy set.
func (e *Engine) load(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	files, err := readFiles(e.dir)
	if err != nil {
		return e.reject(ctx, "", err)
	}
	return e.activate(ctx, files)
}

// activate compiles files unless they are the active set. Callers hold mu.
func (e *Engine) activate(ctx context.Context, files []file) error {
	v := version(files)
	e.tried = v
	if cur := e.Set(); cur != nil && cur.Version() == v {
		e.log.DebugContext(ctx, "policy set unchanged", "dir", e.dir, "version", v)
		if e.held {
			// The held set was withdrawn: the gate hears that the set in
			// effect is offered again, and lets its hold go.
			e.held = false
			_ = e.gate(ctx, cur)
		}
		return nil
	}
	s, err := compile(e.dir, files)
	if err != nil {
		return e.reject(ctx, v, err)
	}
	if e.gate != nil {
		if err := e.gate(ctx, s); err != nil {
			e.tried, e.held = "", true // offer it again at the next poll
			return fmt.Errorf("%w: policy set %s: %w", ErrHeld, v, err)
		}
		e.held = false
	}
	if e.onLoad != nil {
		e.onLoad(s)
	}
	e.current.Store(s)
	e.log.InfoContext(ctx, "policy set loaded", "dir", e.dir, "version", v, "policies", s.Len())
	if e.active != nil {
		e.active(ctx, s)
	}
	return nil
}

// reject logs a failed load and returns it, naming the set that stays.
func (e *Engine) reject(ctx context.Context, version string, err error) error {
	cur := e.Set()
	if cur == nil {
		return err
	}
	e.log.ErrorContext(ctx, "policy set rejected, keeping the active one",
		"dir", e.dir, "version", version, "active", cur.Version(), "error", err)
	return fmt.Errorf("%w (policy set %s stays active)", err, cur.Version())
}

// watch polls the directory until ctx is done.
func (e *Engine) watch(ctx context.Context) {
	t := time.NewTicker(e.poll)
	defer t.Stop()
	var lastErr string
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if ctx.Err() != nil { // select picks randomly when both are ready
			return
		}
		err := e.pollOnce(ctx)
		if err != nil && err.Error() != lastErr {
			e.log.WarnContext(ctx, "policy directory unreadable", "dir", e.dir, "error", err)
		}
		lastErr = errString(err)
	}
}

// pollOnce loads the directory if its content differs from what was last
// tried, so a rejected set is reported once, not every poll.
func (e *Engine) pollOnce(ctx context.Context) error {
	files, err := readFiles(e.dir)
	if err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if version(files) == e.tried {
		return nil
	}
	var le *LoadError
	if err := e.activate(ctx, files); err != nil && !errors.As(err, &le) && !errors.Is(err, ErrHeld) {
		return err
	}
	return nil
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
