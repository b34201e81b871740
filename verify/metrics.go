package verify

import (
	"errors"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are a Verifier's Prometheus metrics, labelled with its audience;
// nil without Config.Registerer.
type metrics struct {
	tokens   *prometheus.CounterVec
	accepted prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, audience string, revs *revocations) (*metrics, error) {
	if reg == nil {
		return nil, nil
	}
	labels := prometheus.Labels{"audience": audience}
	m := &metrics{tokens: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sigil_verify_tokens_total", ConstLabels: labels,
		Help: "Tokens verified, by result: accepted, a refusal's reason (e.g. token_revoked, token_not_bound_to_the_client_certificate), or revocation_unknown.",
	}, []string{"result"})}
	m.accepted = m.tokens.WithLabelValues("accepted")
	feedUp := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "sigil_verify_revocation_feed_up", ConstLabels: labels,
		Help: "1 while the revocation feed is connected and verified, else 0.",
	}, func() float64 {
		if revs.down() == 0 {
			return 1
		}
		return 0
	})
	revoked := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "sigil_verify_revoked_tokens", ConstLabels: labels,
		Help: "Revoked token ids remembered from the feed.",
	}, func() float64 { return float64(revs.size()) })
	for _, c := range []prometheus.Collector{m.tokens, feedUp, revoked} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// observe counts a verification's result.
func (m *metrics) observe(err error) {
	switch {
	case m == nil:
	case err == nil:
		m.accepted.Inc()
	case errors.Is(err, ErrRevocationUnknown):
		m.tokens.WithLabelValues("revocation_unknown").Inc()
	default:
		m.tokens.WithLabelValues(strings.ReplaceAll(description(err), " ", "_")).Inc()
	}
}
