package tokens

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/sigil-dev/sigil/api"
	"github.com/sigil-dev/sigil/audit"
	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/signer"
	"github.com/sigil-dev/sigil/token"
)

// minted is a signed (or, for a reference token, generated) token and its
// record.
type minted struct {
	token     string
	record    store.Token
	tokenType string // issued_token_type
}

// form decides between a JWT and a reference token: a reference token
// when any audience is configured for them or the client asked for one
// (requested_token_type access_token); a JWT otherwise. A JWT or
// transaction token asked for an audience configured for reference tokens
// is invalid_target.
func (s *Service) form(f *tokenForm, c *token.Claims) (bool, error) {
	for _, a := range c.Audience {
		if !s.opaque[a] {
			continue
		}
		if f.requested == api.TokenTypeJWT || f.wantTxnToken {
			return false, newError(InvalidTarget, "audience %q accepts reference tokens only: request %s or leave requested_token_type out", a, api.TokenTypeAccessToken)
		}
		return true, nil
	}
	return f.wantOpaque, nil
}

// mint makes the token of claims c in the form decided: a reference
// token, a transaction token or a JWT access token.
func (s *Service) mint(ctx context.Context, f *tokenForm, c *token.Claims, opaque bool) (*minted, error) {
	switch {
	case opaque:
		return s.reference(c)
	case f.wantTxnToken:
		return s.jwt(ctx, c, s.cfg.Minter.TxnToken, store.TokenTxn, api.TokenTypeTxnToken)
	case f.requested == api.TokenTypeJWT:
		return s.jwt(ctx, c, s.cfg.Minter.AccessToken, store.TokenJWT, api.TokenTypeJWT)
	}
	return s.jwt(ctx, c, s.cfg.Minter.AccessToken, store.TokenJWT, api.TokenTypeAccessToken)
}

type mintFunc func(context.Context, token.Claims) (*signer.Minted, error)

func (s *Service) jwt(ctx context.Context, c *token.Claims, mint mintFunc, kind, tokenType string) (*minted, error) {
	m, err := mint(ctx, *c)
	if err != nil {
		return nil, err
	}
	rec := recordOf(m.Claims, kind)
	rec.KID = m.KID
	return &minted{token: m.Token, record: rec, tokenType: tokenType}, nil
}

// reference makes a reference token for c: the handle goes to the client,
// only its digest to the store.
func (s *Service) reference(c *token.Claims) (*minted, error) {
	handle, digest := signer.NewReference()
	hash, err := base64.RawURLEncoding.DecodeString(digest)
	if err != nil {
		return nil, fmt.Errorf("tokens: reference digest: %w", err)
	}
	claims := *c
	claims.Type, claims.Issuer, claims.ID = token.AccessToken, s.issuer, signer.NewID()
	if !claims.Expiry.After(s.now()) {
		return nil, errors.New("tokens: reference token would be expired")
	}
	if err := claims.CheckIdentities(); err != nil {
		return nil, fmt.Errorf("tokens: reference token: %w", err)
	}
	rec := recordOf(&claims, store.TokenOpaque)
	rec.HandleHash = hash
	return &minted{token: handle, record: rec, tokenType: api.TokenTypeAccessToken}, nil
}

func recordOf(c *token.Claims, kind string) store.Token {
	return store.Token{
		JTI: c.ID, Sub: c.Subject, ClientID: c.ClientID, Act: c.Actor.Chain(), Aud: c.Audience,
		Scope: strings.Join(c.Scope, " "), IssuedAt: c.IssuedAt, ExpiresAt: c.Expiry, CNF: c.Confirmation, Kind: kind,
	}
}

// record stores the token and its audit entry in one transaction, after
// the record of its external subject token, if any and not stored yet
// (store.RecordToken). A
// subject token revoked meanwhile, or an external one revoked ever, fails
// the exchange (invalid_request); the caller's certificate revoked
// meanwhile fails the request (invalid_client); any other failure is
// ErrNotRecorded, and the token is never returned.
func (s *Service) record(ctx context.Context, kind audit.Kind, rec store.Token, policies []string, external *store.Token) error {
	payload := store.AuditToken(rec)
	payload.PolicyIDs = policies
	entry, err := store.NewAuditEntry(kind, s.now(), payload, "jti:"+rec.JTI)
	if err != nil {
		return notRecorded("token "+rec.JTI, err)
	}
	err = store.RecordToken(ctx, s.cfg.Store, store.TokenRecord{External: external, Token: rec, Entry: entry})
	switch {
	case err == nil:
		s.nudge()
		return nil
	case errors.Is(err, store.ErrCertificateRevoked):
		s.log.InfoContext(ctx, "tokens: client certificate revoked during the request", "jti", rec.JTI)
		return invalidClient("the client certificate has been revoked: renew or enroll again")
	case errors.Is(err, store.ErrRevoked):
		return &presentedError{param: "subject_token", err: err}
	}
	s.log.ErrorContext(ctx, "tokens: token not recorded, not issued", "jti", rec.JTI, "err", err)
	return notRecorded("token "+rec.JTI, err)
}

func (s *Service) response(m *minted) *Response {
	typ := "Bearer"
	if m.record.Kind == store.TokenTxn {
		typ = "N_A"
	}
	return &Response{
		AccessToken: m.token, IssuedTokenType: m.tokenType, TokenType: typ,
		ExpiresIn: int64(m.record.ExpiresAt.Sub(s.now()) / time.Second), Scope: m.record.Scope, JTI: m.record.JTI,
	}
}

// referenceRecord finds the record of a reference token by its digest
// (signer.ReferenceDigest); one that is not live (revoked, or its
// certificate revoked) is store.ErrRevoked.
func (s *Service) referenceRecord(ctx context.Context, digest string, caller *client) (store.Token, error) {
	rec, err := s.referenceByDigest(ctx, digest)
	if err == nil {
		err = s.live(ctx, rec, caller)
	}
	return rec, err
}

// referenceByDigest finds the record of a reference token by its digest,
// revoked or not.
func (s *Service) referenceByDigest(ctx context.Context, digest string) (store.Token, error) {
	hash, err := base64.RawURLEncoding.DecodeString(digest)
	if err != nil {
		return store.Token{}, fmt.Errorf("tokens: reference digest: %w", err)
	}
	return s.cfg.Store.TokenByHandle(ctx, hash)
}

// claimsOf gives the claims of a reference token from its record.
func claimsOf(rec store.Token, issuer string) *token.Claims {
	return &token.Claims{
		Type: token.AccessToken, Issuer: issuer, Subject: rec.Sub, Audience: rec.Aud,
		IssuedAt: rec.IssuedAt, NotBefore: rec.IssuedAt, Expiry: rec.ExpiresAt, ID: rec.JTI,
		ClientID: rec.ClientID, Scope: strings.Fields(rec.Scope), Confirmation: rec.CNF, Actor: token.NewActor(rec.Act),
	}
}
