package audit

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Failure stages, the values of the "stage" label of
// sigil_audit_checkpoint_failures_total.
const (
	stageRead  = "read"  // reading the storage
	stageSign  = "sign"  // signing (the HSM)
	stageStore = "store" // storing the checkpoint
	stageLease = "lease" // asking the checkpoint lease (WithLease)
)

// metrics holds the collectors WithMetrics registers; a nil *metrics
// records nothing.
type metrics struct {
	signed   prometheus.Counter
	failures *prometheus.CounterVec
	size     prometheus.Gauge
	lag      prometheus.Gauge
	duration prometheus.Histogram
	leader   prometheus.Gauge
}

func newMetrics(r prometheus.Registerer) (*metrics, error) {
	if r == nil {
		return nil, nil
	}
	m := &metrics{
		signed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sigil_audit_checkpoints_signed_total",
			Help: "Audit log checkpoints signed and stored.",
		}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sigil_audit_checkpoint_failures_total",
			Help: "Failed checkpoint attempts by stage (read, sign, store); each is retried at the next tick.",
		}, []string{"stage"}),
		size: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sigil_audit_tree_size",
			Help: "Entries covered by the latest signed checkpoint.",
		}),
		lag: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sigil_audit_integration_lag_entries",
			Help: "Entries stored but not yet covered by a signed checkpoint.",
		}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "sigil_audit_integration_duration_seconds",
			Help:    "Time to integrate a batch of new entries: read, hash, sign and store a checkpoint.",
			Buckets: prometheus.ExponentialBuckets(100e-6, 2, 16),
		}),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sigil_audit_checkpoint_leader",
			Help: "1 while this replica holds the checkpoint lease and signs checkpoints, 0 while it follows another's.",
		}),
	}
	for _, c := range []prometheus.Collector{m.signed, m.failures, m.size, m.lag, m.duration, m.leader} {
		if err := r.Register(c); err != nil {
			return nil, fmt.Errorf("audit: register metrics: %w", err)
		}
	}
	for _, s := range []string{stageRead, stageSign, stageStore, stageLease} {
		m.failures.WithLabelValues(s) // export zeros
	}
	return m, nil
}

// leading records whether this Log holds the lease.
func (m *metrics) leading(ok bool) {
	if m == nil {
		return
	}
	if ok {
		m.leader.Set(1)
	} else {
		m.leader.Set(0)
	}
}

func (m *metrics) fail(stage string) {
	if m != nil {
		m.failures.WithLabelValues(stage).Inc()
	}
}

// checkpointed records a stored checkpoint of size, with stored entries.
func (m *metrics) checkpointed(size, stored uint64, took time.Duration) {
	if m == nil {
		return
	}
	m.signed.Inc()
	m.duration.Observe(took.Seconds())
	m.observe(size, stored)
}

// observe records the checkpointed size and the lag behind stored.
func (m *metrics) observe(size, stored uint64) {
	if m == nil {
		return
	}
	m.size.Set(float64(size))
	m.lag.Set(float64(stored - min(size, stored)))
}
