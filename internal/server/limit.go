package server

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sigil-dev/sigil/internal/device"
)

// Revocation feed stream limits unless Server.FeedStreams and
// Server.FeedStreamsPerIdentity say otherwise (config
// tokens.revocation_feed).
const (
	DefaultFeedStreams            = 1024
	DefaultFeedStreamsPerIdentity = 16
)

// feedRetryAfter is the Retry-After, in seconds, of a refused stream.
const feedRetryAfter = "10"

// Refusals of streamLimiter.acquire.
var (
	errIdentityStreams = errors.New("identity holds its most revocation feed streams")
	errServerStreams   = errors.New("server holds its most revocation feed streams")
)

// streamLimiter bounds long-lived streams in all and per identity, so that
// one identity cannot take the streams every other one needs: with
// perIdentity < max, a greedy identity leaves max - perIdentity to the
// others.
type streamLimiter struct {
	max, perIdentity int
	open             prometheus.Gauge
	refused          *prometheus.CounterVec

	mu    sync.Mutex
	total int
	held  map[string]int
}

// newStreamLimiter returns a limiter of max streams, perIdentity for each
// identity; zero means DefaultFeedStreams and
// DefaultFeedStreamsPerIdentity.
func newStreamLimiter(max, perIdentity int, reg prometheus.Registerer) *streamLimiter {
	if max == 0 {
		max = DefaultFeedStreams
	}
	if perIdentity == 0 {
		perIdentity = min(DefaultFeedStreamsPerIdentity, max)
	}
	l := &streamLimiter{
		max: max, perIdentity: perIdentity, held: map[string]int{},
		open: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sigil_revocation_feed_streams",
			Help: "Revocation feed streams open now.",
		}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sigil_revocation_feed_refused_total",
			Help: "Revocation feed streams refused by limit: identity (per SPIFFE ID) or server (in all).",
		}, []string{"limit"}),
	}
	if reg != nil {
		reg.MustRegister(l.open, l.refused)
	}
	return l
}

// acquire takes a stream for identity; release gives it back, once.
// Errors: errIdentityStreams, errServerStreams.
func (l *streamLimiter) acquire(identity string) (release func(), err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.held[identity] >= l.perIdentity:
		l.refused.WithLabelValues("identity").Inc()
		return nil, fmt.Errorf("%w (%d)", errIdentityStreams, l.perIdentity)
	case l.total >= l.max:
		l.refused.WithLabelValues("server").Inc()
		return nil, fmt.Errorf("%w (%d)", errServerStreams, l.max)
	}
	l.held[identity]++
	l.total++
	l.open.Inc()
	var once sync.Once
	return func() { once.Do(func() { l.release(identity) }) }, nil
}

func (l *streamLimiter) release(identity string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.held[identity]--; l.held[identity] <= 0 {
		delete(l.held, identity)
	}
	l.total--
	l.open.Dec()
}

// streamIdentity is who a stream counts against: the SPIFFE ID of the
// TLS-verified client certificate (issued by our CA, so the caller cannot
// choose it), else its serial; "" without a certificate, which the feed
// refuses anyway.
func streamIdentity(cert *x509.Certificate) string {
	switch {
	case cert == nil:
		return ""
	case len(cert.URIs) == 1:
		return cert.URIs[0].String()
	}
	return "serial:" + device.Serial(cert)
}

// streamRefused answers a refusal of acquire: 429 for an identity at its
// limit (it closes one of its own streams), 503 for a full server; both
// with Retry-After.
func (s *oauth) streamRefused(w http.ResponseWriter, r *http.Request, err error) {
	status := http.StatusServiceUnavailable
	desc := "the revocation feed has no free stream; retry later"
	if errors.Is(err, errIdentityStreams) {
		status = http.StatusTooManyRequests
		desc = fmt.Sprintf("this identity already holds %d revocation feed streams, the most it may: close one or retry later", s.streams.perIdentity)
	}
	s.Log.WarnContext(r.Context(), "revocation feed stream refused", "identity", streamIdentity(peerCertificate(r)), "err", err)
	s.requests.WithLabelValues("revocations", "temporarily_unavailable").Inc()
	w.Header().Set("Retry-After", feedRetryAfter)
	oauthError(w, status, "temporarily_unavailable", desc)
}
