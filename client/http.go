package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/sigil-dev/sigil/api"
)

// maxResponse bounds what the client reads from the server.
const maxResponse = 1 << 20

// ServerError is an answer of the server other than success.
type ServerError struct {
	Status      int
	Code        string // api.Error.Code, e.g. "policy_denied"
	Description string
}

func (e *ServerError) Error() string {
	if e.Description == "" {
		return fmt.Sprintf("server answered %d %s", e.Status, e.Code)
	}
	return e.Description
}

// Temporary reports whether trying again later may succeed.
func (e *ServerError) Temporary() bool {
	return e.Status == http.StatusServiceUnavailable || e.Status == http.StatusTooManyRequests
}

// Is makes errors.Is(err, ErrUnavailable) true for a temporary answer and
// errors.Is(err, ErrDenied) for a refusal by policy or by the token rules.
func (e *ServerError) Is(target error) bool {
	switch target {
	case ErrUnavailable:
		return e.Temporary()
	case ErrDenied:
		return deniedCodes[e.Code]
	case ErrAKReplaced:
		return e.Code == "ak_replaced"
	}
	return false
}

// Kinds of failure, for errors.Is.
var (
	// ErrUnavailable: sigild, its HSM or its store is unavailable, or
	// unreachable; try again later.
	ErrUnavailable = errors.New("sigil unavailable")
	// ErrDenied: the policy or the token rules refuse the request; trying
	// again will not help until the policy or the request changes.
	ErrDenied = errors.New("denied")
)

// deniedCodes are the refusals of enrollment and of the OAuth endpoints.
var deniedCodes = map[string]bool{
	"policy_denied": true, "access_denied": true, "unauthorized_client": true,
	"invalid_scope": true, "invalid_target": true, "invalid_grant": true,
	// sigil answers a subject or actor token it refuses (expired, revoked,
	// another audience's) with invalid_request, as RFC 8693 §2.2.2 says.
	"invalid_request": true,
}

// newHTTPClient returns a client that trusts only roots, over TLS 1.3.
//
// sigild speaks HTTP/2, where one connection carries every request. Over
// HTTP/1.1 (HTTP/2 turned off, or lost on the way) each request in flight
// needs a connection of its own, and Go keeps only 2 idle ones per host by
// default: with more requests in flight, connections were closed after
// each answer and each new one cost a handshake signed by the TPM, and
// sigild a handshake's CPU, per request. So it keeps as many idle
// connections as the service transports do (Client.Transport).
func newHTTPClient(roots *x509.CertPool, cert *tls.Certificate) *http.Client {
	cfg := &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: roots}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true, IdleConnTimeout: idleConnTimeout, MaxIdleConnsPerHost: maxIdleConnsPerHost},
	}
}

// How long, and how many per host, a client keeps idle connections.
const (
	idleConnTimeout     = 90 * time.Second
	maxIdleConnsPerHost = 64
)

// post sends in as JSON and decodes the answer into out.
func post(ctx context.Context, hc *http.Client, url string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	data, err := roundTrip(hc, req, maxResponse)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("client: decode answer: %w", err)
	}
	return nil
}

// roundTrip sends req and returns the body of a 200 answer, at most limit
// bytes. Any other status is a *ServerError carrying the answer's error code
// and description (sigil's API and OAuth use the same two members).
func roundTrip(hc *http.Client, req *http.Request, limit int64) ([]byte, error) {
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("client: %w: %w", ErrUnavailable, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("client: read answer to %s: %w", req.URL.Path, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("client: answer to %s larger than %d bytes", req.URL.Path, limit)
	}
	if resp.StatusCode != http.StatusOK {
		var e api.Error
		_ = json.Unmarshal(data, &e)
		return nil, &ServerError{Status: resp.StatusCode, Code: e.Code, Description: e.Description}
	}
	return data, nil
}

func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("client: decode answer: %w", err)
	}
	return nil
}
