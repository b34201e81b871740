package hsm

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics holds the collectors registered by WithMetrics; a nil *metrics
// records nothing.
type metrics struct {
	signs      *prometheus.CounterVec
	latency    *prometheus.HistogramVec
	reconnects *prometheus.CounterVec
	up         prometheus.Gauge
}

func newMetrics(r prometheus.Registerer) (*metrics, error) {
	if r == nil {
		return nil, nil
	}
	m := &metrics{
		signs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sigil_hsm_sign_operations_total",
			Help: "HSM sign operations by algorithm and result (ok, unavailable, error).",
		}, []string{"alg", "result"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sigil_hsm_sign_duration_seconds",
			Help:    "Latency of HSM sign operations, including waits for a session.",
			Buckets: prometheus.ExponentialBuckets(50e-6, 2, 18),
		}, []string{"alg"}),
		reconnects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sigil_hsm_reconnects_total",
			Help: "Attempts to rebuild the PKCS#11 context after a loss, by result (ok, error).",
		}, []string{"result"}),
		up: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sigil_hsm_up",
			Help: "1 while the PKCS#11 context is usable, 0 while it is lost.",
		}),
	}
	return m, m.register(r)
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.signs, m.latency, m.reconnects, m.up}
}

func (m *metrics) register(r prometheus.Registerer) error {
	cs := m.collectors()
	for i, c := range cs {
		if err := r.Register(c); err != nil {
			for _, done := range cs[:i] {
				r.Unregister(done)
			}
			return err
		}
	}
	return nil
}

// unregister removes the collectors so the registerer can serve a new handle.
func (m *metrics) unregister(r prometheus.Registerer) {
	if m == nil {
		return
	}
	for _, c := range m.collectors() {
		r.Unregister(c)
	}
}

func (m *metrics) reconnect(err error) {
	if m == nil {
		return
	}
	m.reconnects.WithLabelValues(outcome(err)).Inc()
}

func (m *metrics) setUp(up bool) {
	if m == nil {
		return
	}
	if up {
		m.up.Set(1)
		return
	}
	m.up.Set(0)
}

func outcome(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, ErrUnavailable):
		return "unavailable"
	}
	return "error"
}

// signMetrics are one algorithm's collectors, resolved once per Key so the
// signing path does no label lookups.
type signMetrics struct {
	ok, unavailable, failed prometheus.Counter
	latency                 prometheus.Observer
}

func (m *metrics) forAlg(alg Alg) *signMetrics {
	if m == nil {
		return nil
	}
	a := string(alg)
	return &signMetrics{
		ok:          m.signs.WithLabelValues(a, "ok"),
		unavailable: m.signs.WithLabelValues(a, "unavailable"),
		failed:      m.signs.WithLabelValues(a, "error"),
		latency:     m.latency.WithLabelValues(a),
	}
}

func (s *signMetrics) observe(start time.Time, err error) {
	if s == nil {
		return
	}
	s.latency.Observe(time.Since(start).Seconds())
	switch outcome(err) {
	case "ok":
		s.ok.Inc()
	case "unavailable":
		s.unavailable.Inc()
	default:
		s.failed.Inc()
	}
}
