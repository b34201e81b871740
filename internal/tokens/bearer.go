package tokens

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/token"
)

// ErrInvalidToken: a bearer token presented to a resource of this server
// (the Shared Signals transmitter) is not one it accepts. Answer 401 with
// WWW-Authenticate: Bearer error="invalid_token" (RFC 6750 §3.1); the
// reason is in the log, not the answer.
var ErrInvalidToken = errors.New("invalid bearer token")

// Bearer checks tok, presented as an RFC 6750 bearer token to a resource
// of this server whose audience is aud, and returns the token's subject:
// it must be a JWT access token of ours (at+jwt, iss, signature, exp,
// nbf, aud as the Verifier checks them), on record as signed, not
// revoked, and bound to a certificate on record and not revoked (cnf).
// peer, the request's TLS client certificate if it sent one, must be that
// certificate: a token bound to one workload's certificate is never
// accepted over another's. Every refusal is ErrInvalidToken, its reason
// logged; a store failure is an error of its own.
func (s *Service) Bearer(ctx context.Context, tok, aud string, peer *x509.Certificate) (string, error) {
	if tok == "" || aud == "" {
		return "", ErrInvalidToken
	}
	c, err := s.cfg.Verifier.Verify(ctx, tok, aud)
	if err != nil {
		s.log.InfoContext(ctx, "tokens: bearer token refused", "audience", aud, "err", err)
		return "", ErrInvalidToken
	}
	rec, err := s.cfg.Store.Token(ctx, c.ID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		s.log.WarnContext(ctx, "tokens: bearer token not on record", "jti", c.ID)
		return "", ErrInvalidToken
	case err != nil:
		return "", fmt.Errorf("tokens: bearer token %s: %w", c.ID, err)
	case rec.Sub != c.Subject || rec.CNF != c.Confirmation || rec.Kind != store.TokenJWT:
		s.log.ErrorContext(ctx, "tokens: signed token differs from its record", "jti", c.ID)
		return "", ErrInvalidToken
	}
	if peer != nil && token.Thumbprint(peer.Raw) != rec.CNF {
		s.log.WarnContext(ctx, "tokens: bearer token presented over another certificate than its cnf", "jti", c.ID)
		return "", ErrInvalidToken
	}
	switch err := s.live(ctx, rec, nil); {
	case errors.Is(err, store.ErrRevoked):
		s.log.InfoContext(ctx, "tokens: bearer token revoked", "jti", c.ID)
		return "", ErrInvalidToken
	case err != nil:
		return "", err
	}
	return rec.Sub, nil
}
