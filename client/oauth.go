package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// OAuth 2.0 endpoints of sigild and the token types of RFC 8693.
const (
	PathToken      = "/oauth2/token"
	PathIntrospect = "/oauth2/introspect"
	PathRevoke     = "/oauth2/revoke"

	GrantClientCredentials = "client_credentials"
	GrantTokenExchange     = "urn:ietf:params:oauth:grant-type:token-exchange"
	TokenTypeAccessToken   = "urn:ietf:params:oauth:token-type:access_token"
	TokenTypeJWT           = "urn:ietf:params:oauth:token-type:jwt"
	TokenTypeTxnToken      = "urn:ietf:params:oauth:token-type:txn_token"
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
}

// TokenResponse is RFC 8693 §2.2.1's answer.
type TokenResponse struct {
	AccessToken     string `json:"access_token"`
	IssuedTokenType string `json:"issued_token_type"`
	TokenType       string `json:"token_type"`
	ExpiresIn       int64  `json:"expires_in"`
	Scope           string `json:"scope,omitempty"`
}

// Token gets a token from sigild over mTLS.
func (w *Workload) Token(ctx context.Context, r TokenRequest) (*TokenResponse, error) {
	form := url.Values{}
	form.Set("grant_type", GrantClientCredentials)
	if r.SubjectToken != "" {
		form.Set("grant_type", GrantTokenExchange)
		form.Set("subject_token", r.SubjectToken)
		form.Set("subject_token_type", orDefault(r.SubjectTokenType, TokenTypeAccessToken))
	}
	if r.ActorToken != "" {
		form.Set("actor_token", r.ActorToken)
		form.Set("actor_token_type", orDefault(r.ActorTokenType, TokenTypeAccessToken))
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
	var out TokenResponse
	if err := w.postForm(ctx, PathToken, form, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Introspect asks sigild about token (RFC 7662); the workload must be in the
// token's audience.
func (w *Workload) Introspect(ctx context.Context, token string) (map[string]any, error) {
	var out map[string]any
	if err := w.postForm(ctx, PathIntrospect, url.Values{"token": {token}}, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// Revoke revokes token and every token exchanged from it (RFC 7009).
func (w *Workload) Revoke(ctx context.Context, token string) error {
	return w.postForm(ctx, PathRevoke, url.Values{"token": {token}}, nil)
}

func (w *Workload) postForm(ctx context.Context, path string, form url.Values, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url(path), strings.NewReader(form.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := w.hc.Do(req)
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
		var e struct {
			Code        string `json:"error"`
			Description string `json:"error_description"`
		}
		_ = json.Unmarshal(data, &e)
		return &ServerError{Status: resp.StatusCode, Code: e.Code, Description: e.Code + ": " + e.Description}
	}
	if out == nil {
		return nil
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
