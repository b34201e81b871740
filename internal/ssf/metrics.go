package ssf

import "github.com/prometheus/client_golang/prometheus"

// metrics counts SETs by delivery method and outcome:
// sigil_ssf_sets_total{method="poll",outcome="handed_out"} and
// {method="push",outcome="accepted"|"rejected"|"failed"}.
type metrics struct {
	sets *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{sets: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sigil_ssf_sets_total",
		Help: "Shared Signals SETs by delivery method and outcome.",
	}, []string{"method", "outcome"})}
	if reg != nil {
		reg.MustRegister(m.sets)
	}
	return m
}

func (m *metrics) count(method, outcome string, n int) {
	m.sets.WithLabelValues(method, outcome).Add(float64(n))
}
