package signer

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Caller is the authenticated client: its X.509-SVID over mTLS.
type Caller struct {
	ID         string // SPIFFE ID, the certificate's URI SAN
	Thumbprint string // x5t#S256 of the certificate, see Thumbprint
	Evidence   string // attestation evidence digest, from the certificate
	Policy     string // policy version that admitted it, from the certificate
}

// Rules are the policy limits of token issuance.
type Rules struct {
	MaxLifetime time.Duration // longest token; at most the KeySet's Retain
	MaxActDepth int           // most actors in an act chain, at least 1
	// Audience reports whether caller may get a token for audience (an
	// audience or resource parameter). Required.
	Audience func(caller Caller, audience string) bool
	// Scope reports whether caller may hold scope in a token for
	// audiences. Optional for exchanges (then any scope of the subject
	// token may pass on); without it client_credentials grants no scope.
	Scope func(caller Caller, audiences []string, scope string) bool
}

// Request is a token request after mTLS and form parsing, with its tokens
// verified (Verifier.SubjectToken, Verifier.ActorToken).
type Request struct {
	Caller   Caller
	Subject  *Claims       // the subject_token; required for an exchange
	Actor    *Claims       // the actor_token, nil if none was sent
	Audience []string      // audience parameters
	Resource []string      // resource parameters (RFC 8707): absolute URIs
	Scope    string        // the scope parameter, space-separated
	Lifetime time.Duration // wished lifetime; 0 for the longest allowed
}

// Limits on request parameters.
const (
	maxTargets   = 16
	maxTargetLen = 512
	maxScopes    = 64
)

// Exchange applies the RFC 8693 token exchange rules and returns the
// claims of the new token, for Minter.AccessToken or Minter.TxnToken:
// sub, client_id, audience, scope, lifetime, cnf, act and the caller's
// attestation reference. Request problems are *Error; any other error is
// a misconfiguration of r (answer server_error).
//
//   - The subject token is required and must name the caller in its aud.
//   - Audience: at least one audience or resource, each permitted by
//     r.Audience; the token gets all of them.
//   - Scope: the requested scopes, each in the subject token's scope and
//     permitted by r.Scope; none requested means the subject's scope, less
//     what r.Scope does not permit. Nothing widens.
//   - Lifetime: the shortest of the request, r.MaxLifetime and the subject
//     token's remaining lifetime.
//   - act: the caller, with the subject token's act nested; at most
//     r.MaxActDepth actors, else invalid_grant (the subject token cannot
//     be delegated further).
//   - An actor token must be the caller's own: sub is the caller and
//     cnf.x5t#S256 its certificate, else invalid_grant.
//   - cnf.x5t#S256 is the caller's certificate.
//   - A transaction token's txn, tctx and rctx carry over, for
//     Minter.TxnToken.
func (r Rules) Exchange(now time.Time, req Request) (*Claims, error) {
	if req.Subject == nil {
		return nil, oauthError(InvalidRequest, "subject_token is required")
	}
	aud, want, err := r.request(req)
	if err != nil {
		return nil, err
	}
	if err := r.grant(now, req); err != nil {
		return nil, err
	}
	if err := r.permitTargets(req.Caller, aud); err != nil {
		return nil, err
	}
	scope, err := r.narrow(req.Caller, aud, want, req.Subject.Scope)
	if err != nil {
		return nil, err
	}
	c := r.issue(now, req, aud, scope, req.Subject.Expiry)
	c.Subject, c.SubjectIssuer = req.Subject.Subject, req.Subject.SubjectIssuer
	c.Actor = &Actor{Subject: req.Caller.ID, Actor: req.Subject.Actor}
	if req.Subject.Type == TxnToken {
		c.Txn, c.TxnContext, c.RequestContext = req.Subject.Txn, req.Subject.TxnContext, req.Subject.RequestContext
	}
	return c, nil
}

// ClientCredentials returns the claims of a token for the caller itself:
// sub and client_id are the caller, audience and lifetime as for Exchange,
// scope only as r.Scope permits.
func (r Rules) ClientCredentials(now time.Time, req Request) (*Claims, error) {
	aud, want, err := r.request(req)
	if err != nil {
		return nil, err
	}
	if req.Subject != nil || req.Actor != nil {
		return nil, oauthError(InvalidRequest, "client_credentials takes no subject_token or actor_token")
	}
	if err := r.permitTargets(req.Caller, aud); err != nil {
		return nil, err
	}
	for _, s := range want {
		if r.Scope == nil || !r.Scope(req.Caller, aud, s) {
			return nil, oauthError(InvalidScope, "scope %q is not permitted for this caller and audience", s)
		}
	}
	c := r.issue(now, req, aud, want, time.Time{})
	c.Subject = req.Caller.ID
	return c, nil
}

// request checks the rules, the caller and the request's parameters, and
// returns the audiences and the requested scopes.
func (r Rules) request(req Request) (aud, scope []string, err error) {
	switch {
	case r.MaxLifetime <= 0 || r.MaxActDepth < 1 || r.Audience == nil:
		return nil, nil, errors.New("signer: rules need MaxLifetime > 0, MaxActDepth >= 1 and an Audience policy")
	case req.Caller.ID == "":
		return nil, nil, oauthError(UnauthorizedClient, "the client certificate carries no SPIFFE ID")
	case len(req.Caller.Thumbprint) != 43 || !isBase64URL(req.Caller.Thumbprint, false):
		return nil, nil, oauthError(UnauthorizedClient, "no client certificate thumbprint to bind the token to")
	case req.Lifetime < 0:
		return nil, nil, oauthError(InvalidRequest, "the requested lifetime is negative")
	}
	if aud, err = targets(req.Audience, req.Resource); err != nil {
		return nil, nil, err
	}
	scope, err = parseScope(req.Scope)
	return aud, scope, err
}

// targets merges audience and resource parameters, without duplicates.
func targets(audience, resource []string) ([]string, error) {
	all := append(slices.Clone(audience), resource...)
	switch {
	case len(all) == 0:
		return nil, oauthError(InvalidRequest, "audience or resource is required: every token is audience-restricted")
	case len(all) > maxTargets:
		return nil, oauthError(InvalidRequest, "at most %d audience and resource parameters", maxTargets)
	}
	for i, t := range all {
		if t == "" || len(t) > maxTargetLen {
			return nil, oauthError(InvalidRequest, "audience and resource values must be 1 to %d bytes", maxTargetLen)
		}
		if i >= len(audience) && !absoluteURI(t) {
			return nil, oauthError(InvalidTarget, "resource must be an absolute URI without a fragment (RFC 8707)")
		}
	}
	slices.Sort(all)
	return slices.Compact(all), nil
}

func absoluteURI(s string) bool {
	u, err := url.Parse(s)
	return err == nil && u.IsAbs() && u.Fragment == "" && !strings.Contains(s, "#")
}

// parseScope splits a scope parameter (RFC 6749 §3.3) into distinct
// scope tokens.
func parseScope(s string) ([]string, error) {
	var out []string
	for _, tok := range strings.Split(s, " ") {
		if tok == "" || slices.Contains(out, tok) {
			continue
		}
		if !scopeToken(tok) {
			return nil, oauthError(InvalidScope, "scope is malformed (RFC 6749 section 3.3)")
		}
		out = append(out, tok)
	}
	if len(out) > maxScopes {
		return nil, oauthError(InvalidScope, "at most %d scopes", maxScopes)
	}
	return out, nil
}

func scopeToken(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c == 0x22 || c == 0x5c || c > 0x7e {
			return false
		}
	}
	return true
}

// grant checks the subject and actor tokens against the caller.
func (r Rules) grant(now time.Time, req Request) error {
	sub, caller := req.Subject, req.Caller
	switch {
	case !slices.Contains(sub.Audience, caller.ID):
		return oauthError(InvalidGrant, "subject_token was issued to another audience, not to the caller")
	case !sub.Expiry.After(now):
		return oauthError(InvalidGrant, "subject_token has expired")
	case sub.Actor.Depth()+1 > r.MaxActDepth:
		return oauthError(InvalidGrant, "subject_token's delegation chain already has %d actors, the most allowed", sub.Actor.Depth())
	}
	if a := req.Actor; a != nil && (a.Subject != caller.ID || a.Confirmation != caller.Thumbprint) {
		return oauthError(InvalidGrant, "actor_token is not the caller's own (its sub and cnf must match the client certificate)")
	}
	if a := req.Actor; a != nil && !a.Expiry.After(now) {
		return oauthError(InvalidGrant, "actor_token has expired")
	}
	return nil
}

func (r Rules) permitTargets(caller Caller, aud []string) error {
	for _, a := range aud {
		if !r.Audience(caller, a) {
			return oauthError(InvalidTarget, "audience %q is not permitted for this caller", a)
		}
	}
	return nil
}

// narrow returns the scope of the new token: want if it is within have
// and permitted, or all of have that is permitted if want is empty.
func (r Rules) narrow(caller Caller, aud, want, have []string) ([]string, error) {
	permitted := func(s string) bool { return r.Scope == nil || r.Scope(caller, aud, s) }
	if len(want) == 0 {
		var out []string
		for _, s := range have {
			if permitted(s) {
				out = append(out, s)
			}
		}
		return out, nil
	}
	for _, s := range want {
		switch {
		case !slices.Contains(have, s):
			return nil, oauthError(InvalidScope, "scope %q is not in the subject token's scope: scopes only narrow", s)
		case !permitted(s):
			return nil, oauthError(InvalidScope, "scope %q is not permitted for this caller and audience", s)
		}
	}
	return want, nil
}

// issue fills in what every new token has; limit, if set, caps the expiry.
func (r Rules) issue(now time.Time, req Request, aud, scope []string, limit time.Time) *Claims {
	now = now.UTC().Truncate(time.Second)
	life := r.MaxLifetime
	if req.Lifetime > 0 && req.Lifetime < life {
		life = req.Lifetime
	}
	exp := now.Add(life)
	if !limit.IsZero() && limit.Before(exp) {
		exp = limit
	}
	c := req.Caller
	return &Claims{
		Type: AccessToken, Audience: aud, Scope: scope, ClientID: c.ID, Confirmation: c.Thumbprint,
		Evidence: c.Evidence, Policy: c.Policy, IssuedAt: now, NotBefore: now, Expiry: exp.Truncate(time.Second),
	}
}

// Thumbprint returns the RFC 8705 x5t#S256 of a certificate:
// base64url(SHA-256(DER)), without padding.
func Thumbprint(der []byte) string {
	sum := sha256.Sum256(der)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// SubjectToken verifies a subject_token of the given subject_token_type
// issued to audience (the caller's SPIFFE ID), and maps failures to OAuth
// errors: a missing, empty or malformed token or type is invalid_request,
// a token that fails verification invalid_grant. The precise reason is
// logged by the Verifier.
func (v *Verifier) SubjectToken(ctx context.Context, token, tokenType, audience string) (*Claims, error) {
	return v.grantToken(ctx, "subject_token", token, tokenType, audience)
}

// ActorToken is SubjectToken for an actor_token; audience is the one the
// caller's own tokens for the token service carry (its issuer URL).
func (v *Verifier) ActorToken(ctx context.Context, token, tokenType, audience string) (*Claims, error) {
	return v.grantToken(ctx, "actor_token", token, tokenType, audience)
}

func (v *Verifier) grantToken(ctx context.Context, param, token, tokenType, audience string) (*Claims, error) {
	if token == "" {
		return nil, oauthError(InvalidRequest, "%s is missing", param)
	}
	var c *Claims
	var err error
	switch tokenType {
	case "":
		return nil, oauthError(InvalidRequest, "%s_type is missing", param)
	case TokenTypeAccessToken, TokenTypeJWT:
		c, err = v.Verify(ctx, token, audience)
	case TokenTypeTxnToken:
		c, err = v.VerifyTxn(ctx, token, audience)
	default:
		return nil, oauthError(InvalidRequest, "%s_type is not supported: use %s, %s or %s", param, TokenTypeAccessToken, TokenTypeJWT, TokenTypeTxnToken)
	}
	var te *TokenError
	switch {
	case err == nil:
		return c, nil
	case errors.As(err, &te) && te.Kind == ErrMalformed:
		return nil, oauthError(InvalidRequest, "%s is malformed: %s", param, te.Reason)
	case errors.As(err, &te):
		return nil, oauthError(InvalidGrant, "%s is invalid: %s", param, te.Reason)
	}
	return nil, err
}
