package hsm

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Option tunes Open.
type Option func(*options)

type options struct {
	pinEnv      string
	logger      *slog.Logger
	registerer  prometheus.Registerer
	timeout     time.Duration
	maxSessions int
	sessionWait time.Duration
	backoffMin  time.Duration
	backoffMax  time.Duration
}

// Defaults for the options below.
const (
	DefaultTimeout     = 5 * time.Second
	DefaultMaxSessions = 16
	DefaultSessionWait = 2 * time.Second
	DefaultBackoffMin  = 250 * time.Millisecond
	DefaultBackoffMax  = 15 * time.Second
)

// WithPINEnv reads the user PIN from the environment variable name when the
// URI has no pin-source. Setting both is an error, so a stale file never
// silently wins over the variable or the other way round.
func WithPINEnv(name string) Option { return func(o *options) { o.pinEnv = name } }

// WithLogger sets the logger (default slog.Default()). PINs are never logged.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithMetrics registers the package's Prometheus collectors (sign operations
// by algorithm and result, sign latency, reconnects, up) with r. Nothing is
// registered without it. Collectors are per handle: give each HSM its own
// registerer, for example prometheus.WrapRegistererWith(labels, r).
func WithMetrics(r prometheus.Registerer) Option { return func(o *options) { o.registerer = r } }

// WithTimeout bounds each Key.Sign and Healthy call, from waiting for the
// connection to the signature (default DefaultTimeout). Calls that take a
// context are bounded by it instead.
func WithTimeout(d time.Duration) Option { return func(o *options) { o.timeout = d } }

// WithSessions sets the PKCS#11 session pool size (at least 2, one being the
// persistent login session) and how long an operation waits for a free
// session before failing with ErrUnavailable (default DefaultMaxSessions and
// DefaultSessionWait). Never zero: zero would wait forever.
func WithSessions(max int, wait time.Duration) Option {
	return func(o *options) { o.maxSessions, o.sessionWait = max, wait }
}

// WithReconnectBackoff sets the delay between failed reconnect attempts: it
// starts at min and doubles up to max, with ±20% jitter (default
// DefaultBackoffMin, DefaultBackoffMax). The first attempt after a loss is
// immediate.
func WithReconnectBackoff(min, max time.Duration) Option {
	return func(o *options) { o.backoffMin, o.backoffMax = min, max }
}

func newOptions(opts []Option) (*options, error) {
	o := &options{
		logger:      slog.Default(),
		timeout:     DefaultTimeout,
		maxSessions: DefaultMaxSessions,
		sessionWait: DefaultSessionWait,
		backoffMin:  DefaultBackoffMin,
		backoffMax:  DefaultBackoffMax,
	}
	for _, opt := range opts {
		opt(o)
	}
	return o, o.validate()
}

func (o *options) validate() error {
	switch {
	case o.logger == nil:
		return fmt.Errorf("hsm: WithLogger: nil logger")
	case o.timeout <= 0:
		return fmt.Errorf("hsm: WithTimeout: must be positive")
	case o.maxSessions < 2:
		return fmt.Errorf("hsm: WithSessions: max must be at least 2")
	case o.sessionWait <= 0:
		return fmt.Errorf("hsm: WithSessions: wait must be positive")
	case o.backoffMin <= 0 || o.backoffMax < o.backoffMin:
		return fmt.Errorf("hsm: WithReconnectBackoff: need 0 < min <= max")
	}
	return nil
}
