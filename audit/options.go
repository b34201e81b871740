package audit

import (
	"errors"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// DefaultInterval is how often Run looks for new entries without a Nudge.
const DefaultInterval = time.Second

// Option tunes New.
type Option func(*options)

type options struct {
	interval   time.Duration
	logger     *slog.Logger
	registerer prometheus.Registerer
	now        func() time.Time
	lease      Lease
}

// WithInterval sets how often Run integrates new entries when not nudged
// (default DefaultInterval). It is also the retry delay after a failure.
func WithInterval(d time.Duration) Option { return func(o *options) { o.interval = d } }

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithMetrics registers the log's Prometheus collectors with r: checkpoints
// signed, checkpoint failures by stage, tree size, integration lag and
// integration duration. Nothing is registered without it.
func WithMetrics(r prometheus.Registerer) Option { return func(o *options) { o.registerer = r } }

// WithClock sets the clock that dates checkpoints (default time.Now).
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

func newOptions(opts []Option) (options, error) {
	o := options{interval: DefaultInterval, logger: slog.Default(), now: time.Now}
	for _, opt := range opts {
		opt(&o)
	}
	switch {
	case o.interval <= 0:
		return o, errors.New("audit: WithInterval: must be positive")
	case o.logger == nil:
		return o, errors.New("audit: WithLogger: nil logger")
	case o.now == nil:
		return o, errors.New("audit: WithClock: nil clock")
	}
	return o, nil
}
