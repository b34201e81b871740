package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sigil-dev/sigil/api"
	"github.com/sigil-dev/sigil/attest"
	"github.com/sigil-dev/sigil/hsm"
	"github.com/sigil-dev/sigil/internal/enroll"
	"github.com/sigil-dev/sigil/policy"
)

func newServer(ready map[string]Checker) *httptest.Server {
	s := &Server{
		Bundle:   []byte("bundle"),
		Ready:    ready,
		Log:      slog.New(slog.NewTextHandler(io.Discard, nil)),
		Registry: prometheus.NewRegistry(),
	}
	return httptest.NewServer(s.Handler())
}

func TestRequestBodies(t *testing.T) {
	srv := newServer(nil)
	defer srv.Close()
	tests := []struct {
		name   string
		body   string
		status int
		code   string
	}{
		{"too-large", `{"identity":"` + strings.Repeat("a", api.MaxRequestBytes) + `"}`, http.StatusRequestEntityTooLarge, "request_too_large"},
		{"not-json", `identity=a`, http.StatusBadRequest, "invalid_request"},
		{"unknown-field", `{"identity":"spiffe://sigil.test/a","admin":true}`, http.StatusBadRequest, "invalid_request"},
		{"trailing-data", `{"identity":"spiffe://sigil.test/a"} {}`, http.StatusBadRequest, "invalid_request"},
		{"wrong-type", `{"ek_public":42}`, http.StatusBadRequest, "invalid_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := http.Post(srv.URL+api.PathChallenge, "application/json", strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.status || !strings.Contains(string(body), `"error":"`+tt.code+`"`) {
				t.Fatalf("got %d %s, want %d %s", resp.StatusCode, body, tt.status, tt.code)
			}
		})
	}
}

func TestReadyz(t *testing.T) {
	down := CheckFunc(func(context.Context) error { return fmt.Errorf("token gone: %w", hsm.ErrUnavailable) })
	up := CheckFunc(func(context.Context) error { return nil })
	for _, tt := range []struct {
		name   string
		ready  map[string]Checker
		status int
	}{
		{"all-up", map[string]Checker{"hsm": up, "store": up}, http.StatusOK},
		{"hsm-down", map[string]Checker{"hsm": down, "store": up}, http.StatusServiceUnavailable},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := newServer(tt.ready)
			defer srv.Close()
			resp, err := http.Get(srv.URL + "/readyz")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Fatalf("readyz = %d, want %d", resp.StatusCode, tt.status)
			}
		})
	}
}

// Each failure maps to a status and a stable code; HSM outages say "retry".
func TestClassify(t *testing.T) {
	tests := []struct {
		name   string
		err    error
		status int
		code   string
	}{
		{"policy", &enroll.DeniedError{Identity: "spiffe://sigil.test/x", Decision: policy.Decision{Version: "sha256:00"}}, http.StatusForbidden, "policy_denied"},
		{"attestation", fmt.Errorf("wrapped: %w", &attest.Error{Step: attest.StepQuote, Err: errors.New("bad nonce")}), http.StatusForbidden, "attestation_failed"},
		{"bad-request", fmt.Errorf("%w: x", enroll.ErrBadRequest), http.StatusBadRequest, "invalid_request"},
		{"unknown", enroll.ErrUnknownChallenge, http.StatusNotFound, "unknown_challenge"},
		{"replay", enroll.ErrChallengeUsed, http.StatusConflict, "challenge_used"},
		{"expired", enroll.ErrChallengeExpired, http.StatusGone, "challenge_expired"},
		{"disabled", enroll.ErrDeviceDisabled, http.StatusForbidden, "device_disabled"},
		{"not-renewable", enroll.ErrNotRenewable, http.StatusForbidden, "not_renewable"},
		{"ak-mismatch", fmt.Errorf("%w: x", enroll.ErrAKMismatch), http.StatusConflict, "ak_mismatch"},
		{"ak-replaced", fmt.Errorf("%w: x (attest: quote: y)", enroll.ErrAKReplaced), http.StatusConflict, "ak_replaced"},
		{"hsm-down", &hsm.Error{Op: "sign", Kind: hsm.ErrUnavailable}, http.StatusServiceUnavailable, "temporarily_unavailable"},
		{"not-recorded", fmt.Errorf("enroll: %w: issuance: disk full", enroll.ErrNotRecorded), http.StatusServiceUnavailable, "temporarily_unavailable"},
		{"other", errors.New("disk on fire"), http.StatusInternalServerError, "server_error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, code, desc := classify(tt.err)
			if status != tt.status || code != tt.code {
				t.Fatalf("classify = %d %s, want %d %s", status, code, tt.status, tt.code)
			}
			if tt.code == "attestation_failed" && strings.Contains(desc, "bad nonce") {
				t.Error("attestation detail leaked to the client")
			}
			if tt.code == "server_error" && strings.Contains(desc, "fire") {
				t.Error("internal error detail leaked to the client")
			}
		})
	}
}

func TestRetryAfterOnHSMOutage(t *testing.T) {
	s := &Server{Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	rec := httptest.NewRecorder()
	s.fail(rec, httptest.NewRequest(http.MethodPost, api.PathComplete, nil), &hsm.Error{Op: "sign", Kind: hsm.ErrUnavailable})
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" {
		t.Fatalf("got %d with Retry-After %q", rec.Code, rec.Header().Get("Retry-After"))
	}
}

// TestReadyzReportsPolicyVersion: /readyz names the policy set in effect,
// ready or not, so that replicas running different sets show.
func TestReadyzReportsPolicyVersion(t *testing.T) {
	for _, tt := range []struct {
		name   string
		err    error
		status int
	}{
		{"ready", nil, http.StatusOK},
		{"store-down", errors.New("connection refused"), http.StatusServiceUnavailable},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := &Server{
				Ready:         map[string]Checker{"store": CheckFunc(func(context.Context) error { return tt.err })},
				PolicyVersion: func() string { return "sha256:abcd" },
				Log:           slog.New(slog.DiscardHandler), Registry: prometheus.NewRegistry(),
			}
			srv := httptest.NewServer(s.Handler())
			defer srv.Close()
			resp, err := http.Get(srv.URL + "/readyz")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.status || !strings.Contains(string(body), "\npolicy_version: sha256:abcd\n") {
				t.Fatalf("readyz = %d %q, want %d with the policy version", resp.StatusCode, body, tt.status)
			}
		})
	}
}

// TestInternalErrorWhileStoreDown: a request failing with an error the
// server does not classify is 503 with Retry-After while a dependency
// /readyz checks is down, and 500 while all answer.
func TestInternalErrorWhileStoreDown(t *testing.T) {
	var down atomic.Bool
	s := &Server{
		CRL: func(context.Context) ([]byte, error) {
			return nil, errors.New("store: read revocations: connection refused")
		},
		Ready: map[string]Checker{"store": CheckFunc(func(context.Context) error {
			if down.Load() {
				return errors.New("connection refused")
			}
			return nil
		})},
		Log: slog.New(slog.DiscardHandler), Registry: prometheus.NewRegistry(),
	}
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	get := func() *http.Response {
		resp, err := http.Get(srv.URL + api.PathCRL)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if resp := get(); resp.StatusCode != http.StatusInternalServerError {
		t.Fatalf("internal error with the store up = %d, want 500", resp.StatusCode)
	}
	down.Store(true)
	if resp := get(); resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("internal error with the store down = %d (Retry-After %q), want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
}
