package tokens

import (
	"errors"
	"fmt"

	"github.com/sigil-dev/sigil/signer"
)

// OAuth error codes this package returns besides signer's (RFC 6749 §5.2).
const (
	// InvalidClient: no client certificate, or one this server did not
	// issue, no longer on record, revoked or expired. HTTP 401.
	InvalidClient = "invalid_client"
	// UnsupportedGrantType: a grant_type other than client_credentials
	// and token exchange. HTTP 400.
	UnsupportedGrantType = "unsupported_grant_type"
)

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

// Every OAuth error is a *signer.Error: Code is the "error" member,
// Description the "error_description". HTTP status: 401 for
// invalid_client, 400 for every other code.
func oauthError(code, format string, args ...any) *signer.Error {
	return &signer.Error{Code: code, Description: fmt.Sprintf(format, args...)}
}

func invalidRequest(format string, args ...any) *signer.Error {
	return oauthError(signer.InvalidRequest, format, args...)
}

func invalidGrant(format string, args ...any) *signer.Error {
	return oauthError(signer.InvalidGrant, format, args...)
}

func invalidClient(format string, args ...any) *signer.Error {
	return oauthError(InvalidClient, format, args...)
}

// notRecorded wraps a failed recording.
func notRecorded(what string, err error) error {
	return fmt.Errorf("tokens: %w: %s: %w", ErrNotRecorded, what, err)
}
