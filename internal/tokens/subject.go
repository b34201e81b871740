package tokens

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/sigil-dev/sigil/api"
	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/signer"
	"github.com/sigil-dev/sigil/token"
)

// subject is what a token exchange acts for: the verified subject token,
// the caller's own actor token if it sent one, and the jti of the subject
// token's record, the new token's parent.
type subject struct {
	claims *token.Claims
	actor  *token.Claims // nil if no actor_token was sent
	parent string
	// external: the subject token is an external issuer's, recorded with
	// the new token (see externalJTI) unless it is already.
	external bool
}

// subject verifies the subject token, issued to the caller, and the actor
// token if one was sent.
func (s *Service) subject(ctx context.Context, c *client, f *tokenForm) (*subject, error) {
	sub, err := s.subjectToken(ctx, c, f)
	if err != nil {
		return nil, err
	}
	if f.actor != "" {
		if sub.actor, err = s.actorToken(ctx, c, f); err != nil {
			return nil, err
		}
	}
	return sub, nil
}

// externalRecord is the record of an external subject token, first seen
// at seen, to store with the new token; nil if the subject is ours.
func (sub *subject) externalRecord(seen time.Time) *store.Token {
	if sub == nil || !sub.external {
		return nil
	}
	rec := externalRecord(sub.parent, sub.claims, seen)
	return &rec
}

// subjectToken verifies the subject token, issued to the caller: a JWT of
// ours or of an external issuer, or one of our reference tokens. One of
// ours must be on record and not revoked. An external one is recorded with
// the new token (see externalJTI), which its revocation then refuses: that
// costs no read here, and the HSM signature of the refused token is the
// only waste.
func (s *Service) subjectToken(ctx context.Context, c *client, f *tokenForm) (*subject, error) {
	const param = "subject_token"
	if f.subjectType == api.TokenTypeAccessToken && !strings.Contains(f.subject, ".") {
		if digest, err := signer.ReferenceDigest(f.subject); err == nil {
			rec, err := s.referenceRecord(ctx, digest, c)
			if err != nil {
				return nil, s.recordErr(ctx, param, err)
			}
			return &subject{claims: claimsOf(rec, s.issuer), parent: rec.JTI}, nil
		}
	}
	sub, err := s.presented(ctx, param, f.subject, f.subjectType, c.caller.ID)
	if err != nil {
		return nil, err
	}
	if sub.Issuer != s.issuer {
		return &subject{claims: sub, parent: externalJTI(f.subject), external: true}, nil
	}
	if err := s.onRecord(ctx, c, param, sub); err != nil {
		return nil, err
	}
	return &subject{claims: sub, parent: sub.ID}, nil
}

// actorToken verifies an actor token: a token of ours for the token
// service (audience: the issuer), on record and not revoked. An external
// issuer's is refused: an actor is a workload that sigil saw. The rules
// check that it is the caller's own.
func (s *Service) actorToken(ctx context.Context, c *client, f *tokenForm) (*token.Claims, error) {
	const param = "actor_token"
	act, err := s.presented(ctx, param, f.actor, f.actorType, s.issuer)
	if err != nil {
		return nil, err
	}
	if act.Issuer != s.issuer {
		s.log.InfoContext(ctx, "tokens: actor_token of an external issuer refused", "issuer", act.Issuer)
		return nil, &presentedError{param: param, err: store.ErrNotFound}
	}
	if err := s.onRecord(ctx, c, param, act); err != nil {
		return nil, err
	}
	return act, nil
}

// presented verifies a JWT sent as param (subject_token or actor_token)
// of the RFC 8693 type typ, issued to audience.
func (s *Service) presented(ctx context.Context, param, tok, typ, audience string) (*token.Claims, error) {
	var c *token.Claims
	var err error
	switch {
	case tok == "":
		return nil, invalidRequest("%s is missing", param)
	case typ == "":
		return nil, invalidRequest("%s_type is missing", param)
	case typ == api.TokenTypeAccessToken || typ == api.TokenTypeJWT:
		c, err = s.cfg.Verifier.Verify(ctx, tok, audience)
	case typ == api.TokenTypeTxnToken:
		// A transaction token is for the whole trust domain, of which
		// every caller (a certificate of ours) is a workload.
		c, err = s.cfg.Verifier.VerifyTxn(ctx, tok, s.txnAudience)
	default:
		return nil, invalidRequest("%s_type is not supported: use %s, %s or %s", param, api.TokenTypeAccessToken, api.TokenTypeJWT, api.TokenTypeTxnToken)
	}
	if err != nil {
		return nil, &presentedError{param: param, err: err}
	}
	return c, nil
}

// onRecord checks that a verified JWT of ours is on record as issued and
// live: not revoked, nor its certificate (see live; caller is the
// request's client).
func (s *Service) onRecord(ctx context.Context, caller *client, param string, c *token.Claims) error {
	rec, err := s.cfg.Store.Token(ctx, c.ID)
	if err == nil {
		err = s.live(ctx, rec, caller)
	}
	if err == nil && (rec.Sub != c.Subject || rec.CNF != c.Confirmation) {
		s.log.ErrorContext(ctx, "tokens: signed token differs from its record", "jti", c.ID)
		err = store.ErrNotFound
	}
	if err != nil {
		return s.recordErr(ctx, param, err)
	}
	return nil
}

// recordErr is a failed record lookup of a presented token: revoked or
// unknown is the token's defect (*presentedError), anything else the
// store's.
func (s *Service) recordErr(ctx context.Context, param string, err error) error {
	switch {
	case errors.Is(err, store.ErrRevoked):
		return &presentedError{param: param, err: err}
	case errors.Is(err, store.ErrNotFound):
		s.log.InfoContext(ctx, "tokens: presented token not on record", "param", param)
		return &presentedError{param: param, err: err}
	}
	return fmt.Errorf("tokens: look up %s: %w", param, err)
}
