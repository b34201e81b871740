package signer

import (
	"errors"
	"fmt"
)

// Kinds of broken exchange rule, matched with errors.Is on the
// *RuleError that Rules.Exchange and Rules.ClientCredentials return. The
// token service answers each with its OAuth error code.
var (
	// ErrRequest: a parameter is missing, repeated or malformed, such as
	// no audience or a negative lifetime. The client fixes the request.
	ErrRequest = errors.New("bad token request")
	// ErrClient: the caller has no certificate-bound identity (SPIFFE ID
	// and certificate thumbprint) to issue to.
	ErrClient = errors.New("no client identity to issue to")
	// ErrGrant: the subject or actor token is not acceptable: expired,
	// issued to another audience, not the caller's own (actor_token), or
	// its delegation chain is already at the depth limit.
	ErrGrant = errors.New("grant not acceptable")
	// ErrTarget: a resource is not an absolute URI.
	ErrTarget = errors.New("bad target")
	// ErrScope: a scope is malformed or wider than the subject token's.
	ErrScope = errors.New("bad scope")
)

// RuleError is a token request that breaks an exchange rule. Kind is one
// of ErrRequest, ErrClient, ErrGrant, ErrTarget and ErrScope; Reason says
// what failed and how to fix it. Reasons never contain a token or other
// secret, and echo request input only as a validated, quoted value (a
// scope); they are fit for an OAuth error_description.
type RuleError struct {
	Kind   error
	Reason string
}

func (e *RuleError) Error() string { return "signer: " + e.Kind.Error() + ": " + e.Reason }

// Unwrap returns Kind.
func (e *RuleError) Unwrap() error { return e.Kind }

func broken(kind error, format string, args ...any) *RuleError {
	return &RuleError{Kind: kind, Reason: fmt.Sprintf(format, args...)}
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
	// At the token endpoint: invalid_request (RFC 8693 §2.2.2); at a resource server: 401
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
