package signer

import (
	"errors"
	"fmt"
)

// OAuth error codes of RFC 6749 §5.2, RFC 8693 §2.2.2 and RFC 8707 §2, as
// used in Error.Code. All of them answer HTTP 400 at the token endpoint.
const (
	// InvalidRequest: a parameter is missing, repeated or malformed, such
	// as a missing, empty or unparseable subject_token.
	InvalidRequest = "invalid_request"
	// InvalidGrant: the subject or actor token is not acceptable: expired,
	// not yet valid, badly signed, issued to another audience, or not the
	// caller's own (actor_token), or its delegation chain is already at the
	// depth limit.
	InvalidGrant = "invalid_grant"
	// InvalidTarget: an audience or resource is not permitted, or a
	// resource is not an absolute URI.
	InvalidTarget = "invalid_target"
	// InvalidScope: a scope is malformed, wider than the subject token's,
	// or not permitted by policy.
	InvalidScope = "invalid_scope"
	// UnauthorizedClient: the caller has no certificate-bound identity to
	// issue to.
	UnauthorizedClient = "unauthorized_client"
	// AccessDenied: a policy denial with no more specific code. Listed by
	// DESIGN; RFC 6749 defines it for the authorization endpoint only, so
	// this package does not return it itself.
	AccessDenied = "access_denied"
)

// Error is an OAuth error response: Code is the "error" member and
// Description the "error_description". Descriptions name what failed and
// how to fix it; they never contain a token or other secret, and echo
// request input only as a validated, quoted value (a scope or an audience).
type Error struct {
	Code        string
	Description string
}

func (e *Error) Error() string { return "signer: " + e.Code + ": " + e.Description }

func oauthError(code, format string, args ...any) *Error {
	return &Error{Code: code, Description: fmt.Sprintf(format, args...)}
}

// Kinds of token verification failure, matched with errors.Is on the errors
// Verifier returns.
var (
	// ErrMalformed: the input is not a compact JWS at all (too large, wrong
	// number of parts, encrypted, bad base64 or JSON). At the token
	// endpoint: invalid_request.
	ErrMalformed = errors.New("malformed token")
	// ErrInvalid: a well-formed JWS that is not acceptable (algorithm,
	// header, type, issuer, key, signature, audience, times or claims).
	// At the token endpoint: invalid_grant; at a resource server: 401
	// invalid_token.
	ErrInvalid = errors.New("invalid token")
)

// TokenError is the error of every failed verification. Kind is
// ErrMalformed or ErrInvalid; Reason is a fixed phrase, safe to return to
// the client; Err is the precise cause, for logs only.
type TokenError struct {
	Kind   error
	Reason string
	Err    error
}

func (e *TokenError) Error() string { return "signer: " + e.Kind.Error() + ": " + e.Reason }

// Unwrap returns Kind and, if set, Err.
func (e *TokenError) Unwrap() []error {
	if e.Err == nil {
		return []error{e.Kind}
	}
	return []error{e.Kind, e.Err}
}

func malformed(reason string, err error) *TokenError {
	return &TokenError{Kind: ErrMalformed, Reason: reason, Err: err}
}

func invalid(reason string, err error) *TokenError {
	return &TokenError{Kind: ErrInvalid, Reason: reason, Err: err}
}
