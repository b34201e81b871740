package tokens

import (
	"errors"
	"fmt"

	"github.com/sigil-dev/sigil/attest"
	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/policy"
	"github.com/sigil-dev/sigil/signer"
)

// OAuth error codes of RFC 6749 §5.2, RFC 7009 §2.2.1, RFC 8693 §2.2.2
// and RFC 8707 §2, as used in Error.Code. HTTP status: 401 for
// InvalidClient, 400 for every other code.
const (
	// InvalidRequest: a parameter is missing, repeated or malformed, such
	// as a missing, empty or unparseable subject_token.
	InvalidRequest = "invalid_request"
	// InvalidClient: no client certificate, or one this server did not
	// issue, no longer on record, revoked or expired.
	InvalidClient = "invalid_client"
	// InvalidGrant: the subject or actor token is not acceptable: expired,
	// not yet valid, badly signed, issued to another audience, revoked, not
	// the caller's own (actor_token), or its delegation chain is already at
	// the depth limit.
	InvalidGrant = "invalid_grant"
	// UnauthorizedClient: the caller has no certificate-bound identity to
	// issue to, or may not revoke the token it names.
	UnauthorizedClient = "unauthorized_client"
	// UnsupportedGrantType: a grant_type other than client_credentials
	// and token exchange.
	UnsupportedGrantType = "unsupported_grant_type"
	// InvalidTarget: an audience or resource is not permitted by policy,
	// a resource is not an absolute URI, or the audience takes reference
	// tokens only.
	InvalidTarget = "invalid_target"
	// InvalidScope: a scope is malformed, wider than the subject token's,
	// or not permitted by policy.
	InvalidScope = "invalid_scope"
	// AccessDenied: a forbid policy matched, or the attestation evidence
	// of the client certificate no longer verifies.
	AccessDenied = "access_denied"
)

// Error is an OAuth error response: Code is the "error" member and
// Description the "error_description". Descriptions name what failed and
// how to fix it; they never contain a token or other secret, and echo
// request input only as a validated, quoted value (a scope or an
// audience).
type Error struct {
	Code        string
	Description string
}

func (e *Error) Error() string { return "tokens: " + e.Code + ": " + e.Description }

// Errors callers act on.
var (
	// ErrNotRecorded: the token and its audit entry could not be committed,
	// so no token was issued and nothing was revoked. Answer 503 with
	// Retry-After; the client may try again.
	ErrNotRecorded = errors.New("could not record the operation in the store and the audit log")

	// ErrFeedUnavailable: the revocation feed is not running (Run has
	// ended) or has as many subscribers as it takes. Answer 503 with
	// Retry-After.
	ErrFeedUnavailable = errors.New("revocation feed unavailable")

	// ErrLagged ends a Subscription whose subscriber did not keep up.
	// End the stream; the subscriber reconnects with Last-Event-ID and
	// resumes where it left off.
	ErrLagged = errors.New("revocation feed subscriber fell behind")
)

// oauthError is the one place that turns a failed token request into the
// OAuth error the client gets. The steps of the request return what they
// found, typed: a *RuleError of signer's exchange rules, a presented
// token that fails (*presentedError), a policy denial (*denial), an
// attestation step that no longer verifies, or an *Error the step wrote
// itself (request parsing, client authentication). Anything else passes
// unchanged: ErrNotRecorded, a key that cannot sign, a server error.
func oauthError(err error) error {
	var (
		oe *Error
		re *signer.RuleError
		pe *presentedError
		de *denial
	)
	switch {
	case err == nil:
		return nil
	case errors.As(err, &oe):
		return oe
	case errors.As(err, &re):
		return &Error{Code: ruleCodes[re.Kind], Description: re.Reason}
	case errors.As(err, &pe):
		return pe.oauth()
	case errors.As(err, &de):
		return de.oauth()
	case attest.StepOf(err) != "":
		return newError(AccessDenied, "the attestation evidence of the client certificate no longer verifies (step %s): renew or enroll again", attest.StepOf(err))
	}
	return err
}

// ruleCodes are the OAuth codes of signer's rule kinds.
var ruleCodes = map[error]string{
	signer.ErrRequest: InvalidRequest,
	signer.ErrClient:  UnauthorizedClient,
	signer.ErrGrant:   InvalidGrant,
	signer.ErrTarget:  InvalidTarget,
	signer.ErrScope:   InvalidScope,
}

// presentedError is a subject or actor token (param) that fails: its
// verification (a *signer.TokenError), or its record (store.ErrRevoked,
// store.ErrNotFound).
type presentedError struct {
	param string
	err   error
}

func (e *presentedError) Error() string { return "tokens: " + e.param + ": " + e.err.Error() }
func (e *presentedError) Unwrap() error { return e.err }

func (e *presentedError) oauth() error {
	var te *signer.TokenError
	switch {
	case errors.As(e.err, &te) && te.Kind == signer.ErrMalformed:
		return newError(InvalidRequest, "%s is malformed: %s", e.param, te.Reason)
	case errors.As(e.err, &te):
		return newError(InvalidGrant, "%s is invalid: %s", e.param, te.Reason)
	case errors.Is(e.err, store.ErrRevoked):
		return newError(InvalidGrant, "%s has been revoked", e.param)
	case errors.Is(e.err, store.ErrNotFound):
		return newError(InvalidGrant, "%s is invalid: not a token this server issued", e.param)
	}
	return e
}

// denial is a policy decision against the token: for an audience whatever
// the scopes (invalid_target: RFC 8693 §2.2.2, unwilling to issue a token
// for that target), or for a scope of a permitted audience
// (invalid_scope); either one by a matching forbid policy is
// access_denied, the policy having prohibited it explicitly. The
// description names what was denied and the policy set version that
// decided (policy.Decision.Reason).
type denial struct {
	scope    bool   // a scope was denied, not an audience
	what     string // what was denied, quoted
	decision policy.Decision
}

func (d *denial) Error() string { return "tokens: policy denies " + d.what }

func (d *denial) oauth() error {
	code := InvalidTarget
	switch {
	case len(d.decision.PolicyIDs) > 0:
		code = AccessDenied
	case d.scope:
		code = InvalidScope
	}
	return newError(code, "policy denies %s: %s", d.what, d.decision.Reason())
}

func newError(code, format string, args ...any) *Error {
	return &Error{Code: code, Description: fmt.Sprintf(format, args...)}
}

func invalidRequest(format string, args ...any) *Error {
	return newError(InvalidRequest, format, args...)
}

func invalidClient(format string, args ...any) *Error {
	return newError(InvalidClient, format, args...)
}

// notRecorded wraps a failed recording.
func notRecorded(what string, err error) error {
	return fmt.Errorf("tokens: %w: %s: %w", ErrNotRecorded, what, err)
}
