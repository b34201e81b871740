package client

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are a Client's Prometheus metrics, labelled with its SPIFFE ID;
// nil without Config.Registerer.
type metrics struct {
	renewals *prometheus.CounterVec
	fetches  *prometheus.CounterVec
	lookups  prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, w *Workload) (*metrics, error) {
	if reg == nil {
		return nil, nil
	}
	labels := prometheus.Labels{"spiffe_id": w.State().SPIFFEID}
	m := &metrics{
		renewals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sigil_client_renewals_total", ConstLabels: labels,
			Help: "Certificate renewals by the renewal loop or Renew, by result: renewed, denied, unavailable or failed.",
		}, []string{"result"}),
		fetches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sigil_client_token_fetches_total", ConstLabels: labels,
			Help: "Tokens fetched from sigild for outgoing requests, by result: issued, denied, unavailable or failed.",
		}, []string{"result"}),
		lookups: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sigil_client_token_lookups_total", ConstLabels: labels,
			Help: "Outgoing requests that needed a token; those not fetched got a cached one or shared a fetch in flight.",
		}),
	}
	expiry := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "sigil_client_certificate_expiry_timestamp_seconds", ConstLabels: labels,
		Help: "When the current X.509-SVID expires, in Unix seconds.",
	}, func() float64 { return float64(w.State().Chain[0].NotAfter.Unix()) })
	for _, c := range []prometheus.Collector{m.renewals, m.fetches, m.lookups, expiry} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// result names the outcome of a call to sigild.
func result(err error, ok string) string {
	switch {
	case err == nil:
		return ok
	case errors.Is(err, ErrDenied):
		return "denied"
	case errors.Is(err, ErrUnavailable):
		return "unavailable"
	}
	return "failed"
}

func (m *metrics) renewed(err error) {
	if m != nil {
		m.renewals.WithLabelValues(result(err, "renewed")).Inc()
	}
}

func (m *metrics) fetched(err error) {
	if m != nil {
		m.fetches.WithLabelValues(result(err, "issued")).Inc()
	}
}

func (m *metrics) lookup() {
	if m != nil {
		m.lookups.Inc()
	}
}
