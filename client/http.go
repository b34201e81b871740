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

// newHTTPClient returns a client that trusts only roots, over TLS 1.3.
func newHTTPClient(roots *x509.CertPool, cert *tls.Certificate) *http.Client {
	cfg := &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: roots}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true},
	}
}

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
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	if err != nil {
		return fmt.Errorf("client: read answer: %w", err)
	}
	if len(data) > maxResponse {
		return errors.New("client: answer larger than 1 MiB")
	}
	if resp.StatusCode != http.StatusOK {
		var e api.Error
		_ = json.Unmarshal(data, &e)
		return &ServerError{Status: resp.StatusCode, Code: e.Code, Description: e.Description}
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("client: decode answer: %w", err)
	}
	return nil
}

func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("client: decode answer: %w", err)
	}
	return nil
}
