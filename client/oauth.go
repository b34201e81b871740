package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/sigil-dev/sigil/api"
)

// TokenRequest asks for a token: for the workload itself, or, with a
// SubjectToken, on behalf of that token's subject (RFC 8693).
type TokenRequest struct {
	Audience           []string
	Resource           []string
	Scope              []string
	SubjectToken       string
	SubjectTokenType   string // default: access_token
	ActorToken         string
	ActorTokenType     string
	RequestedTokenType string
	// RequestContext and RequestDetails are a transaction token request's
	// request_context and request_details: base64url JSON objects (see
	// Client.TxnToken).
	RequestContext, RequestDetails string
}

// TokenResponse is RFC 8693 §2.2.1's answer.
type TokenResponse struct {
	AccessToken     string `json:"access_token"`
	IssuedTokenType string `json:"issued_token_type"`
	TokenType       string `json:"token_type"`
	ExpiresIn       int64  `json:"expires_in"`
	Scope           string `json:"scope,omitempty"`
}

// Token gets a token from sigild over mTLS, bound to the workload's
// current certificate.
func (w *Workload) Token(ctx context.Context, r TokenRequest) (*TokenResponse, error) {
	return w.token(ctx, w.cur.Load(), r)
}

// token gets a token bound to id's certificate.
func (w *Workload) token(ctx context.Context, id *identity, r TokenRequest) (*TokenResponse, error) {
	form := url.Values{}
	form.Set("grant_type", api.GrantClientCredentials)
	if r.SubjectToken != "" {
		form.Set("grant_type", api.GrantTokenExchange)
		form.Set("subject_token", r.SubjectToken)
		form.Set("subject_token_type", orDefault(r.SubjectTokenType, api.TokenTypeAccessToken))
	}
	if r.ActorToken != "" {
		form.Set("actor_token", r.ActorToken)
		form.Set("actor_token_type", orDefault(r.ActorTokenType, api.TokenTypeAccessToken))
	}
	for _, a := range r.Audience {
		form.Add("audience", a)
	}
	for _, res := range r.Resource {
		form.Add("resource", res)
	}
	if len(r.Scope) > 0 {
		form.Set("scope", strings.Join(r.Scope, " "))
	}
	if r.RequestedTokenType != "" {
		form.Set("requested_token_type", r.RequestedTokenType)
	}
	if r.RequestContext != "" {
		form.Set("request_context", r.RequestContext)
	}
	if r.RequestDetails != "" {
		form.Set("request_details", r.RequestDetails)
	}
	var out TokenResponse
	if err := w.postForm(ctx, id.hc, api.PathToken, form, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Introspect asks sigild about token (RFC 7662); the workload must be in the
// token's audience.
func (w *Workload) Introspect(ctx context.Context, token string) (map[string]any, error) {
	var out map[string]any
	if err := w.postForm(ctx, w.HTTPClient(), api.PathIntrospect, url.Values{"token": {token}}, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// Revoke revokes token and every token exchanged from it (RFC 7009).
func (w *Workload) Revoke(ctx context.Context, token string) error {
	return w.postForm(ctx, w.HTTPClient(), api.PathRevoke, url.Values{"token": {token}}, nil)
}

func (w *Workload) postForm(ctx context.Context, hc *http.Client, path string, form url.Values, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url(path), strings.NewReader(form.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	data, err := roundTrip(hc, req, maxResponse)
	var se *ServerError
	if errors.As(err, &se) {
		se.Description = se.Code + ": " + se.Description // OAuth descriptions do not repeat the code
	}
	if err != nil || out == nil {
		return err
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("client: decode answer: %w", err)
	}
	return nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
