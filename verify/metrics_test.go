package verify

import (
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/sigil-dev/sigil/testenv"
)

// TestMetrics: verifications are counted by result, with the refusal's
// reason; the feed's state and the revoked set are gauges.
func TestMetrics(t *testing.T) {
	e := newEnv(t)
	f := newFeedServer(t)
	reg := prometheus.NewPedanticRegistry()
	cfg := e.config(t)
	cfg.Revocation.FeedURL = f.URL
	cfg.Registerer = reg
	v := e.verifier(t, cfg)
	testenv.WaitFor(t, revocationWait, "feed up", func() bool { return v.revs.down() == 0 })

	tok := e.token(t, e.mint, e.certA)
	for range 2 {
		if _, err := v.Verify(t.Context(), tok, e.certA); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := v.Verify(t.Context(), tok, e.certB); !errors.Is(err, errNotBound) {
		t.Fatalf("Verify with another certificate: %v", err)
	}
	f.add(signSET(t, e.key, issuer, jtiOf(t, tok), 1))
	testenv.WaitFor(t, revocationWait, "revocation", func() bool {
		_, err := v.Verify(t.Context(), tok, e.certA)
		return errors.Is(err, errRevoked)
	})

	// Polls of the revoked token before the event arrived were accepted.
	if got := metricValue(t, reg, "sigil_verify_tokens_total", "accepted"); got < 2 {
		t.Errorf("accepted = %v, want at least 2", got)
	}
	for _, c := range []struct {
		name, result string
		want         float64
	}{
		{"sigil_verify_tokens_total", "token_not_bound_to_the_client_certificate", 1},
		{"sigil_verify_tokens_total", "token_revoked", 1},
		{"sigil_verify_revocation_feed_up", "", 1},
		{"sigil_verify_revoked_tokens", "", 1},
	} {
		if got := metricValue(t, reg, c.name, c.result); got != c.want {
			t.Errorf("%s{result=%q} = %v, want %v", c.name, c.result, got, c.want)
		}
	}
}

// metricValue returns the value of the metric name of reg for the
// verifier's audience and, if not empty, result.
func metricValue(t *testing.T, reg *prometheus.Registry, name, result string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if labels(m)["audience"] != testAudience || labels(m)["result"] != result {
				continue
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

func labels(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}
