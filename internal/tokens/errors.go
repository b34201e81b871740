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
//
// RFC 8693 §2.2.2: a subject or actor token that is invalid for any
// reason is invalid_request, never invalid_grant; so is every failure of
// the presented tokens here, whatever its cause (the description says
// which). Where sigil goes beyond the RFCs (AccessDenied) the README says
// why.
const (
	// InvalidRequest: a parameter is missing, repeated or malformed; or the
	// subject or actor token is not acceptable: malformed, expired, not
	// yet valid, badly signed, issued to another audience, revoked, not on
	// record, not the caller's own (actor_token), or its delegation chain
	// is already at the depth limit.
	InvalidRequest = "invalid_request"
	// InvalidClient: no client certificate, or one this server did not
	// issue, no longer on record, revoked or expired.
	InvalidClient = "invalid_client"
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
// Description the "error_description". Descriptions say what the client
// can act on: what failed and how to fix it. They never contain a token or
// other secret, nor how the server decided (the policy set version, the
// policies evaluated or matched, a signature's precise defect); they echo
// request input only as a validated, quoted value (a scope or an
// audience). Err, if set, is that precise cause, for the server log: it is
// part of Error() but never of the response.
type Error struct {
	Code        string
	Description string
	Err         error
}

func (e *Error) Error() string {
	if e.Err == nil {
		return "tokens: " + e.Code + ": " + e.Description
	}
	return "tokens: " + e.Code + ": " + e.Description + " (" + e.Err.Error() + ")"
}

func (e *Error) Unwrap() error { return e.Err }

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
	if err == nil { // before the targets of errors.As, which escape: four allocations
		return nil
	}
	var (
		oe *Error
		re *signer.RuleError
		pe *presentedError
		de *denial
	)
	switch {
	case errors.As(err, &oe):
		return oe
	case errors.As(err, &re):
		return &Error{Code: ruleCodes[re.Kind], Description: re.Reason, Err: err}
	case errors.As(err, &pe):
		return pe.oauth()
	case errors.As(err, &de):
		return de.oauth()
	case attest.StepOf(err) != "":
		return &Error{Code: AccessDenied, Err: err, Description: fmt.Sprintf(
			"the attestation evidence of the client certificate no longer verifies (step %s): renew or enroll again", attest.StepOf(err))}
	}
	return err
}

// ruleCodes are the OAuth codes of signer's rule kinds.
var ruleCodes = map[error]string{
	signer.ErrRequest: InvalidRequest,
	signer.ErrClient:  UnauthorizedClient,
	signer.ErrGrant:   InvalidRequest, // RFC 8693 §2.2.2
	signer.ErrTarget:  InvalidTarget,
	signer.ErrScope:   InvalidScope,
}

// presentedError is a subject or actor token (param) that fails: its
// verification (a *signer.TokenError), or its record (store.ErrRevoked,
// store.ErrNotFound). Each is invalid_request (RFC 8693 §2.2.2); the
// description tells the client which.
type presentedError struct {
	param string
	err   error
}

func (e *presentedError) Error() string { return "tokens: " + e.param + ": " + e.err.Error() }
func (e *presentedError) Unwrap() error { return e.err }

func (e *presentedError) oauth() error {
	var te *signer.TokenError
	desc := ""
	switch {
	case errors.As(e.err, &te) && te.Kind == signer.ErrMalformed:
		desc = fmt.Sprintf("%s is malformed: %s", e.param, te.Reason)
	case errors.As(e.err, &te):
		desc = fmt.Sprintf("%s is invalid: %s", e.param, te.Reason)
	case errors.Is(e.err, store.ErrRevoked):
		desc = e.param + " has been revoked"
	case errors.Is(e.err, store.ErrNotFound):
		desc = e.param + " is invalid: not a token this server issued"
	default:
		return e
	}
	return &Error{Code: InvalidRequest, Description: desc, Err: e}
}

// denial is a policy decision against the token: for an audience whatever
// the scopes (invalid_target: RFC 8693 §2.2.2, unwilling to issue a token
// for that target), or for a scope of a permitted audience
// (invalid_scope); either one by a matching forbid policy is
// access_denied, the policy having prohibited it explicitly. The
// description names what was denied and whether a policy forbids it or
// none permits it: what the client can change. How policy decided (the
// set's version, the policies evaluated or matched,
// policy.Decision.Reason) is the error's cause, for the server log.
type denial struct {
	scope    bool   // a scope was denied, not an audience
	what     string // what was denied, quoted
	decision policy.Decision
}

func (d *denial) Error() string {
	return "tokens: policy denies " + d.what + ": " + d.decision.Reason()
}

func (d *denial) oauth() error {
	code, why := InvalidTarget, "no policy permits it"
	switch {
	case len(d.decision.PolicyIDs) > 0:
		code, why = AccessDenied, "a policy forbids it"
	case d.scope:
		code = InvalidScope
	}
	return &Error{Code: code, Description: fmt.Sprintf("policy denies %s: %s", d.what, why), Err: d}
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
