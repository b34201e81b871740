package server

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	enrollments *prometheus.CounterVec
	requests    *prometheus.HistogramVec
	unrecorded  prometheus.Counter

	mu        sync.RWMutex
	observers map[routeStatus]prometheus.Observer // of requests
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		observers: map[routeStatus]prometheus.Observer{},
		enrollments: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sigil_enrollment_requests_total",
			Help: "Enrollment requests by step and outcome.",
		}, []string{"step", "outcome"}),
		requests: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sigil_http_request_duration_seconds",
			Help:    "HTTP request latency by route and status.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"route", "status"}),
		unrecorded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sigil_unrecorded_operations_total",
			Help: "Operations refused because they and their audit entry could not be committed.",
		}),
	}
	reg.MustRegister(m.enrollments, m.requests, m.unrecorded)
	return m
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the connection (flushing the
// revocation feed's events).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (m *metrics) instrument(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		mux.ServeHTTP(sw, r)
		// The mux set the pattern it routed by (the same string mux.Handler
		// returns) on r: no second lookup.
		route := r.Pattern
		if route == "" {
			route = "unmatched"
		}
		m.observer(route, sw.status).Observe(time.Since(start).Seconds())
	})
}

// routeStatus is a label pair of the request histogram.
type routeStatus struct {
	route  string
	status int
}

// observer returns the request histogram of route and status, looked up
// in the vector (hashing both labels, formatting the status) once per pair.
// Routes are the mux's patterns and statuses a few dozen codes, so the
// map stays small.
func (m *metrics) observer(route string, status int) prometheus.Observer {
	key := routeStatus{route, status}
	m.mu.RLock()
	o, ok := m.observers[key]
	m.mu.RUnlock()
	if ok {
		return o
	}
	o = m.requests.WithLabelValues(route, strconv.Itoa(status))
	m.mu.Lock()
	m.observers[key] = o
	m.mu.Unlock()
	return o
}
