package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/sigil-dev/sigil/client"
	"github.com/sigil-dev/sigil/internal/jsonhttp"
)

// Tokens is what the token service needs of the workload: *client.Client.
type Tokens interface {
	CachedToken(ctx context.Context, audience string, scope []string, subject string) (client.Token, error)
	RevokeSubject(ctx context.Context, subject string) error
}

var _ Tokens = (*client.Client)(nil)

// Token service limits.
const (
	maxTokenRequest = 16 << 10 // bytes of a request body
	maxAudience     = 2048
	maxScopes       = 64
)

// Paths of the token service.
const (
	PathToken    = "/v1/token"    // a token for the workload itself
	PathExchange = "/v1/exchange" // a token on behalf of an incoming token's subject
	PathRevoke   = "/v1/revoke"   // end a subject's session
)

// TokenService is the agent's local token service: JSON over HTTP, served
// on a Unix socket only the workload's user (or group) can open. It gives
// the workload's tokens through the client's cache (one fetch in flight
// per audience, scope and subject; reused until 80% of their lifetime), so
// software that is not Go gets what client.Transport gets:
//
//	POST /v1/token    {"audience": A, "scope": "s1 s2"}
//	POST /v1/exchange {"subject_token": T, "audience": A, "scope": "s1"}
//	POST /v1/revoke   {"token": T}
//
// A token answer is {"access_token", "token_type": "Bearer", "expires_in",
// "expires_at"}; an error is {"error", "error_description"} with 400
// invalid_request (a malformed request), 403 access_denied (the policy or
// the token rules refused: do not retry as is), 503 temporarily_unavailable
// with Retry-After (sigild unreachable or unavailable) or 502 server_error.
// The tokens are bound to the workload's certificate: present it (the
// output directory's svid.pem with the TPM key) when sending them.
type TokenService struct {
	tokens Tokens
	log    *slog.Logger
	mux    *http.ServeMux
}

// NewTokenService serves t's tokens.
func NewTokenService(t Tokens, log *slog.Logger) *TokenService {
	s := &TokenService{tokens: t, log: log, mux: http.NewServeMux()}
	s.mux.HandleFunc("POST "+PathToken, s.token)
	s.mux.HandleFunc("POST "+PathExchange, s.exchange)
	s.mux.HandleFunc("POST "+PathRevoke, s.revoke)
	return s
}

func (s *TokenService) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// TokenRequest is the body of /v1/token and /v1/exchange.
type TokenRequest struct {
	Audience     string `json:"audience"`
	Scope        string `json:"scope,omitempty"`         // space-separated
	SubjectToken string `json:"subject_token,omitempty"` // /v1/exchange only
}

// TokenAnswer is a token service answer.
type TokenAnswer struct {
	AccessToken string    `json:"access_token"`
	TokenType   string    `json:"token_type"`
	ExpiresIn   int64     `json:"expires_in"`
	ExpiresAt   time.Time `json:"expires_at"`
}

func (s *TokenService) token(w http.ResponseWriter, r *http.Request) {
	var req TokenRequest
	if !decode(w, r, &req) || !checkTokenRequest(w, req) {
		return
	}
	if req.SubjectToken != "" {
		jsonhttp.Fail(w, http.StatusBadRequest, "invalid_request", "subject_token belongs to /v1/exchange")
		return
	}
	s.issue(w, r, req)
}

func (s *TokenService) exchange(w http.ResponseWriter, r *http.Request) {
	var req TokenRequest
	if !decode(w, r, &req) || !checkTokenRequest(w, req) {
		return
	}
	if req.SubjectToken == "" {
		jsonhttp.Fail(w, http.StatusBadRequest, "invalid_request", "subject_token is required")
		return
	}
	s.issue(w, r, req)
}

func (s *TokenService) issue(w http.ResponseWriter, r *http.Request, req TokenRequest) {
	tok, err := s.tokens.CachedToken(r.Context(), req.Audience, strings.Fields(req.Scope), req.SubjectToken)
	if err != nil {
		s.clientError(w, "token", err)
		return
	}
	jsonhttp.Write(w, http.StatusOK, TokenAnswer{
		AccessToken: tok.AccessToken, TokenType: "Bearer",
		ExpiresIn: int64(time.Until(tok.ExpiresAt).Seconds()), ExpiresAt: tok.ExpiresAt.UTC(),
	})
}

func (s *TokenService) revoke(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Token string `json:"token"`
	}
	if !decode(w, r, &req) {
		return
	}
	if req.Token == "" {
		jsonhttp.Fail(w, http.StatusBadRequest, "invalid_request", "token is required")
		return
	}
	if err := s.tokens.RevokeSubject(r.Context(), req.Token); err != nil {
		s.clientError(w, "revoke", err)
		return
	}
	jsonhttp.Write(w, http.StatusOK, map[string]bool{"revoked": true})
}

// clientError answers a failure of the client library with the status its
// kind calls for.
func (s *TokenService) clientError(w http.ResponseWriter, op string, err error) {
	status, code := errorStatus(err)
	s.log.Warn("token service: "+op+" failed", "err", err, "status", status)
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "5")
	}
	jsonhttp.Fail(w, status, code, err.Error())
}

// errorStatus maps the client's typed errors to an HTTP status and an
// OAuth error code.
func errorStatus(err error) (int, string) {
	switch {
	case errors.Is(err, client.ErrDenied):
		return http.StatusForbidden, "access_denied"
	case errors.Is(err, client.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable, "temporarily_unavailable"
	}
	return http.StatusBadGateway, "server_error"
}

func checkTokenRequest(w http.ResponseWriter, req TokenRequest) bool {
	switch {
	case req.Audience == "":
		jsonhttp.Fail(w, http.StatusBadRequest, "invalid_request", "audience is required")
	case len(req.Audience) > maxAudience:
		jsonhttp.Fail(w, http.StatusBadRequest, "invalid_request", fmt.Sprintf("audience longer than %d bytes", maxAudience))
	case len(strings.Fields(req.Scope)) > maxScopes:
		jsonhttp.Fail(w, http.StatusBadRequest, "invalid_request", fmt.Sprintf("more than %d scopes", maxScopes))
	default:
		return true
	}
	return false
}

// decode reads a JSON body of at most maxTokenRequest bytes with no
// unknown member into v, or answers 400.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	return jsonhttp.Decode(w, r, v, maxTokenRequest)
}
