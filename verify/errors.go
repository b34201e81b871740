package verify

import "errors"

// ErrInvalidToken is the error of every token that fails verification:
// answer 401 with WWW-Authenticate: Bearer error="invalid_token". The
// error also wraps a fixed reason, fit for error_description.
var ErrInvalidToken = errors.New("verify: invalid token")

// ErrRevocationUnknown means the revocation feed has been down longer than
// MaxStaleness and introspection could not stand in: whether the token is
// revoked is unknown. Answer 503 with Retry-After; the client may retry.
var ErrRevocationUnknown = errors.New("verify: revocation status unknown")

// Reasons a token is invalid; each is wrapped together with
// ErrInvalidToken, and its text is the error_description.
var (
	errTooLarge     = errors.New("token too large")
	errMalformed    = errors.New("malformed token")
	errHeader       = errors.New("forbidden token header")
	errType         = errors.New("wrong token type")
	errAlgorithm    = errors.New("algorithm not allowed")
	errUnknownKey   = errors.New("unknown signing key")
	errSignature    = errors.New("invalid signature")
	errIssuer       = errors.New("wrong issuer")
	errAudience     = errors.New("wrong audience")
	errExpired      = errors.New("token expired")
	errNotYetValid  = errors.New("token not yet valid")
	errIssuedFuture = errors.New("token issued in the future")
	errLifetime     = errors.New("token lifetime too long")
	errNoID         = errors.New("token has no jti")
	errIdentity     = errors.New("token names an identity sigil does not issue")
	errNotBound     = errors.New("token not bound to the client certificate")
	errRevoked      = errors.New("token revoked")
	errCertRevoked  = errors.New("client certificate revoked")
)

// ErrCertificateRevoked is a peer certificate that the revocation feed
// says is revoked (VerifyConnection, CheckCertificate): refuse the
// connection or request. Tokens bound to it fail with ErrInvalidToken.
var ErrCertificateRevoked = errors.New("verify: certificate revoked")

// invalid wraps reason with ErrInvalidToken.
func invalid(reason error) error {
	return &tokenError{reason: reason}
}

type tokenError struct{ reason error }

func (e *tokenError) Error() string   { return "verify: invalid token: " + e.reason.Error() }
func (e *tokenError) Unwrap() []error { return []error{ErrInvalidToken, e.reason} }

// description returns the error_description for err: its fixed reason.
func description(err error) string {
	var te *tokenError
	if errors.As(err, &te) {
		return te.reason.Error()
	}
	return "invalid token"
}
