// Package server is sigild's HTTP API: routing, body limits, error answers,
// health and metrics around the domain services.
package server

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sigil-dev/sigil/api"
	"github.com/sigil-dev/sigil/internal/device"
	"github.com/sigil-dev/sigil/internal/enroll"
	"github.com/sigil-dev/sigil/internal/ssf"
	"github.com/sigil-dev/sigil/internal/tokens"
)

// Checker reports whether a dependency answers; used by /readyz.
type Checker interface {
	Healthy(ctx context.Context) error
}

// CheckFunc adapts a function to Checker.
type CheckFunc func(ctx context.Context) error

// Healthy calls f.
func (f CheckFunc) Healthy(ctx context.Context) error { return f(ctx) }

// Server serves the API.
type Server struct {
	Enroll *enroll.Service
	// Bundle is the trust bundle PEM.
	Bundle []byte
	// CRL returns the current DER CRL.
	CRL func(ctx context.Context) ([]byte, error)
	// SPIFFEBundle returns the trust bundle in the SPIFFE bundle format;
	// nil leaves it unserved.
	SPIFFEBundle func(ctx context.Context) ([]byte, error)
	// IssuerCert is the issuing CA certificate, DER; nil leaves it
	// unserved.
	IssuerCert []byte
	// Audit serves the audit log; nil leaves it unserved.
	Audit AuditLog
	// AuditShards serves the chain of shards of a log sharded by time
	// (shards.go); nil for a log not sharded.
	AuditShards LogShards
	// AuditReaders are the SPIFFE IDs that may read audit entries and
	// inclusion proofs, authenticated against Certificates (audit.go).
	AuditReaders []string
	// Certificates finds the certificates this server issued, to
	// authenticate audit readers.
	Certificates device.Certificates
	// Tokens serves the token service (oauth.go); nil leaves it unserved.
	Tokens *tokens.Service
	// SSF serves the Shared Signals transmitter; nil leaves it unserved.
	SSF *ssf.Transmitter
	// Ready lists the dependencies /readyz checks, by name. A request
	// that fails with an internal error while one of them is down is
	// answered 503 (temporarily_unavailable), not 500.
	Ready map[string]Checker
	// PolicyVersion returns the version of the policy set in effect, which
	// /readyz reports so that replicas running different sets show; nil
	// reports none.
	PolicyVersion func() string
	// PolicyHeld returns, while a new policy set is held for an operator's
	// confirmation, a line saying which and why, which /readyz reports
	// (it stays ready: the active set serves); "" or nil when none is.
	PolicyHeld func() string
	// PolicyPlanner answers `sigil policy what-if` for PolicyOperators;
	// nil serves no what-if. MaxRevokeFraction says which plans would be
	// held.
	PolicyPlanner     PolicyPlanner
	PolicyOperators   []string
	MaxRevokeFraction float64
	Log               *slog.Logger
	Registry          *prometheus.Registry
	// FeedHeartbeat and FeedWriteTimeout time the revocation feed (see
	// oauth.go); zero means 15 s and 10 s.
	FeedHeartbeat, FeedWriteTimeout time.Duration
	// FeedStreams and FeedStreamsPerIdentity bound the revocation feed's
	// concurrent streams, in all and per SPIFFE ID (limit.go); zero means
	// DefaultFeedStreams and DefaultFeedStreamsPerIdentity.
	FeedStreams, FeedStreamsPerIdentity int

	metrics *metrics
}

// Handler returns the API's routes, served on long-lived goroutines
// (workers.go).
func (s *Server) Handler() http.Handler {
	s.metrics = newMetrics(s.Registry)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.HandleFunc("GET "+api.PathBundle, s.bundle)
	mux.HandleFunc("GET "+api.PathCRL, s.crl)
	if s.SPIFFEBundle != nil {
		mux.HandleFunc("GET "+api.PathSPIFFEBundle, s.spiffeBundle)
	}
	if s.IssuerCert != nil {
		mux.HandleFunc("GET "+api.PathIssuerCert, s.issuerCert)
	}
	mux.HandleFunc("POST "+api.PathChallenge, s.challenge)
	mux.HandleFunc("POST "+api.PathComplete, s.complete)
	mux.HandleFunc("POST "+api.PathRenewChallenge, s.renewChallenge)
	mux.HandleFunc("POST "+api.PathRenew, s.renew)
	s.auditRoutes(mux)
	s.policyRoutes(mux)
	s.oauthRoutes(mux)
	if s.SSF != nil {
		s.SSF.Routes(mux, s.fail)
	}
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.Registry, promhttp.HandlerOpts{}))
	return newWorkers(maxWorkers, workerIdle).handler(s.metrics.instrument(mux))
}

// readyTimeout bounds a readiness check: a dependency that does not
// answer within it is down.
const readyTimeout = 2 * time.Second

// readyz answers 200 "ready" if every dependency in Ready answers, else
// 503 naming the first that does not; either way the body's second line
// is the policy set's version ("policy_version: sha256:…"), and a third
// names a new set held for confirmation ("policy_held: …"), if any.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	status, line := http.StatusOK, "ready\n"
	if name, err := s.down(r.Context()); err != nil {
		s.Log.WarnContext(r.Context(), "not ready", "dependency", name, "err", err)
		status, line = http.StatusServiceUnavailable, name+" unavailable\n"
	}
	if s.PolicyVersion != nil {
		line += "policy_version: " + s.PolicyVersion() + "\n"
	}
	if s.PolicyHeld != nil {
		if held := s.PolicyHeld(); held != "" {
			line += "policy_held: " + held + "\n"
		}
	}
	w.WriteHeader(status)
	io.WriteString(w, line)
}

// down returns the name of a dependency in Ready that does not answer
// within readyTimeout, and its error; nil if all answer.
func (s *Server) down(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	for name, c := range s.Ready {
		if err := c.Healthy(ctx); err != nil {
			return name, err
		}
	}
	return "", nil
}

// unavailable turns an internal error into 503 when a dependency is down
// (the database stopped answering mid-request): the client retries rather
// than reporting a server bug.
func (s *Server) unavailable(ctx context.Context, status int, code, desc string) (int, string, string) {
	if status != http.StatusInternalServerError {
		return status, code, desc
	}
	if name, err := s.down(ctx); err != nil {
		return http.StatusServiceUnavailable, "temporarily_unavailable", name + " unavailable; retry later"
	}
	return status, code, desc
}

func (s *Server) bundle(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/x-pem-file")
	w.Write(s.Bundle)
}

func (s *Server) crl(w http.ResponseWriter, r *http.Request) {
	der, err := s.CRL(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/pkix-crl")
	w.Write(der)
}

// spiffeBundle answers the SPIFFE bundle. Federated parties poll it at
// its spiffe_refresh_hint, so it is cacheable for no longer.
func (s *Server) spiffeBundle(w http.ResponseWriter, r *http.Request) {
	b, err := s.SPIFFEBundle(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache")
	w.Write(b)
}

func (s *Server) issuerCert(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/pkix-cert")
	w.Write(s.IssuerCert)
}

func (s *Server) challenge(w http.ResponseWriter, r *http.Request) {
	var req api.ChallengeRequest
	if !s.decode(w, r, &req) {
		return
	}
	ch, err := s.Enroll.Challenge(r.Context(), req)
	if err != nil {
		s.metrics.enrollments.WithLabelValues("challenge", outcome(err)).Inc()
		s.fail(w, r, err)
		return
	}
	s.metrics.enrollments.WithLabelValues("challenge", "ok").Inc()
	writeJSON(w, http.StatusOK, ch)
}

func (s *Server) complete(w http.ResponseWriter, r *http.Request) {
	var req api.CompleteRequest
	if !s.decode(w, r, &req) {
		return
	}
	issued, err := s.Enroll.Complete(r.Context(), req)
	if err != nil {
		s.metrics.enrollments.WithLabelValues("complete", outcome(err)).Inc()
		s.fail(w, r, err)
		return
	}
	s.metrics.enrollments.WithLabelValues("complete", "ok").Inc()
	s.Log.InfoContext(r.Context(), "enrolled",
		"spiffe_id", issued.Certificate.SPIFFEID, "ek", issued.Result.EK.Hash,
		"evidence", issued.Certificate.EvidenceDigest, "policy_version", issued.Decision.Version,
		"policies", issued.Decision.PolicyIDs, "rebind_from", issued.PreviousAK)
	writeJSON(w, http.StatusOK, issued.Certificate)
}

func (s *Server) renewChallenge(w http.ResponseWriter, r *http.Request) {
	ch, err := s.Enroll.RenewChallenge(r.Context(), peerCertificate(r))
	if err != nil {
		s.metrics.enrollments.WithLabelValues("renew_challenge", outcome(err)).Inc()
		s.fail(w, r, err)
		return
	}
	s.metrics.enrollments.WithLabelValues("renew_challenge", "ok").Inc()
	writeJSON(w, http.StatusOK, ch)
}

func (s *Server) renew(w http.ResponseWriter, r *http.Request) {
	var req api.RenewRequest
	if !s.decode(w, r, &req) {
		return
	}
	issued, err := s.Enroll.Renew(r.Context(), peerCertificate(r), req)
	if err != nil {
		s.metrics.enrollments.WithLabelValues("renew", outcome(err)).Inc()
		s.fail(w, r, err)
		return
	}
	s.metrics.enrollments.WithLabelValues("renew", "ok").Inc()
	s.Log.InfoContext(r.Context(), "renewed", "spiffe_id", issued.Certificate.SPIFFEID,
		"evidence", issued.Certificate.EvidenceDigest, "policy_version", issued.Decision.Version)
	writeJSON(w, http.StatusOK, issued.Certificate)
}

// decode reads a JSON body of at most api.MaxRequestBytes, rejecting unknown
// fields and trailing data.
func (s *Server) decode(w http.ResponseWriter, r *http.Request, v any) bool {
	r.Body = http.MaxBytesReader(w, r.Body, api.MaxRequestBytes)
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil && dec.More() {
		err = errors.New("trailing data after the JSON object")
	}
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, "request_too_large", fmt.Sprintf("request body exceeds %d bytes", api.MaxRequestBytes))
			return false
		}
		writeError(w, http.StatusBadRequest, "invalid_request", "malformed JSON body: "+err.Error())
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, description string) {
	writeJSON(w, status, api.Error{Code: code, Description: description})
}

// peerCertificate returns the verified client certificate, if any.
func peerCertificate(r *http.Request) *x509.Certificate {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
		return nil
	}
	return r.TLS.VerifiedChains[0][0]
}
