package tokens

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"slices"
	"strings"
	"time"

	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/signer"
	"github.com/sigil-dev/sigil/token"
)

// An external issuer's subject token (a user IdP's) is recorded as the
// root of the tokens exchanged from it, a store.TokenExternal record, so
// that revoking it revokes them and refuses it as a subject token until it
// expires. The record never holds the token.

// externalJTI names the record of an external JWT: "ext:" and the
// base64url SHA-256 of its JWS signing input (header.payload), what its
// issuer signed. Not of its jti, a string the issuer may repeat or leave
// out; not of the whole token either, whose signature its holder can
// re-encode (ECDSA's s and n-s both verify) into a token the record would
// not know. The namespace keeps it apart from our jtis (store.ExternalPrefix).
func externalJTI(token string) string {
	signed := token
	if i := strings.LastIndexByte(token, '.'); i >= 0 {
		signed = token[:i]
	}
	sum := sha256.Sum256([]byte(signed))
	return store.ExternalPrefix + base64.RawURLEncoding.EncodeToString(sum[:])
}

// externalRecord is the record of an external subject token with claims
// c, named jti, first seen at seen (before c's expiry).
func externalRecord(jti string, c *token.Claims, seen time.Time) store.Token {
	return store.Token{
		JTI: jti, Sub: c.Subject, Act: c.Actor.Chain(), Aud: c.Audience, Scope: strings.Join(c.Scope, " "),
		IssuedAt: seen, ExpiresAt: c.Expiry, Kind: store.TokenExternal,
	}
}

// revokeExternal revokes token, if it is an external issuer's token that
// has not expired, for a party in its audience or an admin, and every
// token exchanged from it: it is recorded revoked even if nothing was
// exchanged from it yet. Anything else is none of ours, a success with
// nothing to do (RFC 7009 §2.2).
func (s *Service) revokeExternal(ctx context.Context, c *client, token string) error {
	now := s.now()
	sub := s.verifyExternal(ctx, token, now)
	if sub == nil {
		return nil
	}
	jti := externalJTI(token)
	var role string
	switch {
	case slices.Contains(sub.Audience, c.caller.ID):
		role = "audience"
	case s.admin(c):
		role = "admin"
	default:
		s.log.InfoContext(ctx, "tokens: revocation refused", "jti", jti, "issuer", sub.Issuer, "caller", c.caller.ID)
		return newError(UnauthorizedClient, "the caller may not revoke this token: only a party in its audience or an admin may")
	}
	rec := externalRecord(jti, sub, now)
	revoked, err := s.revoke(ctx, jti, "revoked by its "+role, &rec)
	if err != nil {
		return err
	}
	s.log.InfoContext(ctx, "tokens: revoked", "jti", jti, "issuer", sub.Issuer, "sub", sub.Subject,
		"by", c.caller.ID, "role", role, "revoked", revoked)
	return nil
}

// verifyExternal verifies token as an external issuer's access token, as
// a subject token is verified (signature, iss, typ, exp) but in any of its
// audiences, and returns its claims; nil if it is not one or has expired
// at now.
func (s *Service) verifyExternal(ctx context.Context, tok string, now time.Time) *token.Claims {
	if len(tok) > signer.MaxTokenSize {
		return nil
	}
	_, aud := peek(tok)
	if len(aud) == 0 {
		return nil
	}
	c, err := s.cfg.Verifier.Verify(ctx, tok, aud[0])
	if err != nil || c.Issuer == s.issuer || !c.Expiry.After(now) {
		return nil
	}
	return c
}
