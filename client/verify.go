package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/sigil-dev/sigil/api"
	"github.com/sigil-dev/sigil/verify"
)

// VerifyConfig is the configuration of a verify.Verifier for this workload
// as a resource server: tokens of the sigild it enrolled with (the issuer
// from its RFC 8414 metadata), for its own SPIFFE ID, with the revocation
// feed and introspection as the fallback while the feed is down. Adjust
// the result before verify.New if needed.
func (c *Client) VerifyConfig(ctx context.Context) (verify.Config, error) {
	hc := c.SigildClient()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.w.url(api.PathMetadata), nil)
	if err != nil {
		return verify.Config{}, err
	}
	data, err := roundTrip(hc, req, maxResponse)
	if err != nil {
		return verify.Config{}, fmt.Errorf("client: sigild metadata: %w", err)
	}
	var md struct {
		Issuer string `json:"issuer"`
	}
	if err := json.Unmarshal(data, &md); err != nil || md.Issuer == "" {
		return verify.Config{}, errors.New("client: sigild metadata: no issuer")
	}
	return verify.Config{
		Issuer:   md.Issuer,
		Audience: c.ID().String(),
		JWKSURL:  c.w.url(api.PathJWKS),
		Client:   hc,
		Revocation: verify.Revocation{
			FeedURL: c.w.url(api.PathRevocations),
			Introspect: func(ctx context.Context, token string) (bool, error) {
				out, err := c.w.Introspect(ctx, token)
				if err != nil {
					return false, err
				}
				active, _ := out["active"].(bool)
				return active, nil
			},
		},
		Log: c.log,
	}, nil
}

// SigildClient is an HTTPS client to sigild that presents the workload's
// current certificate, following renewals. It has no overall timeout, so
// it can follow the revocation feed; bound each request with its context.
func (c *Client) SigildClient() *http.Client {
	return &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		return c.w.cur.Load().hc.Transport.RoundTrip(r)
	})}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
