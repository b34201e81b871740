package tokens

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/sigil-dev/sigil/attest"
	"github.com/sigil-dev/sigil/audit"
	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/policy"
	"github.com/sigil-dev/sigil/signer"
)

// Response is a successful token response (RFC 6749 §5.1, RFC 8693
// §2.2.1).
type Response struct {
	AccessToken     string `json:"access_token"`
	IssuedTokenType string `json:"issued_token_type"`
	// TokenType is "Bearer" (RFC 8705 tokens are bearer tokens bound to a
	// certificate), or "N_A" for a transaction token, which is not an
	// access token.
	TokenType string `json:"token_type"`
	ExpiresIn int64  `json:"expires_in"`
	Scope     string `json:"scope,omitempty"`
	// JTI identifies the token in logs and the audit log; not sent.
	JTI string `json:"-"`
}

// issuance is a token about to be minted.
type issuance struct {
	claims *signer.Claims
	parent string     // jti of the subject token's record, "" for client credentials
	kind   audit.Kind // TokenIssued or TokenExchanged
	gate   *gate
	// external is the record of an external subject token, stored with
	// the new token unless it is already.
	external *store.Token
}

// Token answers a token request (form, the POST body) from the holder of
// caller, the TLS-verified client certificate: client_credentials, a
// token for the caller itself, or an RFC 8693 token exchange. The token
// is recorded and audited before it is returned. Errors: *signer.Error
// with the OAuth code (InvalidClient: HTTP 401, others 400);
// ErrNotRecorded (503); hsm.ErrUnavailable or signer.ErrStale when the key
// cannot sign (503); anything else is a server error.
func (s *Service) Token(ctx context.Context, caller *x509.Certificate, form url.Values) (*Response, error) {
	c, err := s.authenticate(ctx, caller)
	if err != nil {
		return nil, err
	}
	f, err := parseTokenForm(form, c.caller.ID)
	if err != nil {
		return nil, err
	}
	facts, err := s.facts.get(ctx, c)
	if step := attest.StepOf(err); step != "" {
		s.log.WarnContext(ctx, "tokens: client's attestation evidence no longer verifies", "serial", c.record.Serial, "err", err)
		return nil, oauthError(signer.AccessDenied, "the attestation evidence of the client certificate no longer verifies (step %s): renew or enroll again", step)
	}
	if err != nil {
		return nil, err
	}
	pc := policy.Caller{SPIFFEID: c.caller.ID, PolicyVersion: c.record.PolicyVersion, Device: facts}
	var iss *issuance
	if f.grant == GrantClientCredentials {
		iss, err = s.clientCredentials(c, pc, f)
	} else {
		iss, err = s.exchange(ctx, c, pc, f)
	}
	if err != nil {
		return nil, err
	}
	return s.issue(ctx, c, f, iss)
}

func (s *Service) rules(g *gate) signer.Rules {
	return signer.Rules{
		MaxLifetime: s.cfg.MaxLifetime, MaxActDepth: s.cfg.MaxActDepth,
		Audience: g.audience, Scope: g.scope,
	}
}

func (s *Service) clientCredentials(c *client, pc policy.Caller, f *tokenForm) (*issuance, error) {
	g := newGate(s.cfg.Policy, pc, nil)
	claims, err := s.rules(g).ClientCredentials(s.now(), signer.Request{
		Caller: c.caller, Audience: f.audience, Resource: f.resource, Scope: f.scope, Lifetime: s.cfg.DefaultTTL,
	})
	if err != nil {
		return nil, g.explain(err)
	}
	return &issuance{claims: claims, kind: audit.TokenIssued, gate: g}, nil
}

func (s *Service) exchange(ctx context.Context, c *client, pc policy.Caller, f *tokenForm) (*issuance, error) {
	sub, parent, err := s.subjectToken(ctx, c, f)
	if err != nil {
		return nil, err
	}
	var actor *signer.Claims
	if f.actor != "" {
		if actor, err = s.actorToken(ctx, f); err != nil {
			return nil, err
		}
	}
	g := newGate(s.cfg.Policy, pc, &policy.Subject{
		Issuer: sub.Issuer, Sub: sub.Subject, Scopes: sub.Scope, ActChain: actChain(sub.Actor),
	})
	claims, err := s.rules(g).Exchange(s.now(), signer.Request{
		Caller: c.caller, Subject: sub, Actor: actor, Audience: f.audience, Resource: f.resource,
		Scope: f.scope, Lifetime: s.cfg.DefaultTTL,
	})
	if err != nil {
		return nil, g.explain(err)
	}
	iss := &issuance{claims: claims, parent: parent, kind: audit.TokenExchanged, gate: g}
	if sub.Issuer != s.issuer {
		rec := externalRecord(parent, sub, claims.IssuedAt)
		iss.external = &rec
	}
	return iss, nil
}

// subjectToken verifies the subject token, issued to the caller: a JWT of
// ours or of an external issuer, or one of our reference tokens, and
// returns it with the jti of its record, the new token's parent. One of
// ours must be on record and not revoked. An external one is recorded with
// the new token (see externalJTI), which its revocation then refuses: that
// costs no read here, and the HSM signature of the refused token is the
// only waste.
func (s *Service) subjectToken(ctx context.Context, c *client, f *tokenForm) (*signer.Claims, string, error) {
	if f.subjectType == signer.TokenTypeAccessToken && !strings.Contains(f.subject, ".") {
		if digest, err := signer.ReferenceDigest(f.subject); err == nil {
			rec, err := s.referenceRecord(ctx, digest)
			if err != nil {
				return nil, "", s.grantRecordErr(ctx, "subject_token", err)
			}
			return claimsOf(rec, s.issuer), rec.JTI, nil
		}
	}
	sub, err := s.cfg.Verifier.SubjectToken(ctx, f.subject, f.subjectType, c.caller.ID)
	if err != nil {
		return nil, "", err
	}
	if sub.Issuer != s.issuer {
		return sub, externalJTI(f.subject), nil
	}
	if err := s.onRecord(ctx, "subject_token", sub); err != nil {
		return nil, "", err
	}
	return sub, sub.ID, nil
}

// actorToken verifies an actor token: a token of ours for the token
// service (audience: the issuer), on record and not revoked. Rules checks
// that it is the caller's own.
func (s *Service) actorToken(ctx context.Context, f *tokenForm) (*signer.Claims, error) {
	act, err := s.cfg.Verifier.ActorToken(ctx, f.actor, f.actorType, s.issuer)
	if err != nil {
		return nil, err
	}
	if act.Issuer == s.issuer {
		if err := s.onRecord(ctx, "actor_token", act); err != nil {
			return nil, err
		}
	}
	return act, nil
}

// onRecord checks that a verified JWT of ours is on record as issued and
// not revoked.
func (s *Service) onRecord(ctx context.Context, param string, c *signer.Claims) error {
	rec, err := s.cfg.Store.Token(ctx, c.ID)
	if err == nil && rec.RevokedAt != nil {
		err = store.ErrRevoked
	}
	if err == nil && (rec.Sub != c.Subject || rec.CNF != c.Confirmation) {
		s.log.ErrorContext(ctx, "tokens: signed token differs from its record", "jti", c.ID)
		err = store.ErrNotFound
	}
	if err != nil {
		return s.grantRecordErr(ctx, param, err)
	}
	return nil
}

// grantRecordErr maps a failed record lookup of a presented token.
func (s *Service) grantRecordErr(ctx context.Context, param string, err error) error {
	switch {
	case errors.Is(err, store.ErrRevoked):
		return invalidGrant("%s has been revoked", param)
	case errors.Is(err, store.ErrNotFound):
		s.log.InfoContext(ctx, "tokens: presented token not on record", "param", param)
		return invalidGrant("%s is invalid: not a token this server issued", param)
	}
	return fmt.Errorf("tokens: look up %s: %w", param, err)
}

// actChain lists the subjects of an act claim, outermost first.
func actChain(a *signer.Actor) []string {
	var out []string
	for ; a != nil; a = a.Actor {
		out = append(out, a.Subject)
	}
	return out
}

// actorOf nests a chain, outermost first, into an act claim.
func actorOf(chain []string) *signer.Actor {
	var a *signer.Actor
	for i := len(chain) - 1; i >= 0; i-- {
		a = &signer.Actor{Subject: chain[i], Actor: a}
	}
	return a
}
