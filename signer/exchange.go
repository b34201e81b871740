package signer

import (
	"errors"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/sigil-dev/sigil/token"
)

// Caller is the authenticated client: its X.509-SVID over mTLS.
type Caller struct {
	ID         string // SPIFFE ID, the certificate's URI SAN
	Thumbprint string // x5t#S256 of the certificate, see token.Thumbprint
	Evidence   string // attestation evidence digest, from the certificate
	Policy     string // policy version that admitted it, from the certificate
}

// Rules are the configured limits of token issuance. Policy (which
// audiences and scopes a caller may have) is not among them: the token
// service asks it about the claims Rules returns.
type Rules struct {
	MaxLifetime time.Duration // longest token; at most the KeySet's Retain
	MaxActDepth int           // most actors in an act chain, at least 1
}

// Request is a token request after mTLS and form parsing, with its tokens
// verified (Verifier.Verify, Verifier.VerifyTxn).
type Request struct {
	Caller   Caller
	Subject  *token.Claims // the subject_token; required for an exchange
	Actor    *token.Claims // the actor_token, nil if none was sent
	Audience []string      // audience parameters
	Resource []string      // resource parameters (RFC 8707): absolute URIs
	Scope    string        // the scope parameter, space-separated
	Lifetime time.Duration // wished lifetime; 0 for the longest allowed

	// TxnContext and RequestContext become a new transaction token's tctx
	// and rctx (Rules.Transaction): the request_details and
	// request_context parameters, JSON objects.
	TxnContext, RequestContext map[string]any
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
// attestation reference. A broken rule is a *RuleError; any other error
// is a misconfiguration of r (answer server_error). It is pure: nothing
// but its arguments decides.
//
//   - The subject token is required and must name the caller in its aud
//     (ErrGrant), and must not have expired.
//   - Audience: at least one audience or resource (ErrRequest), each
//     resource an absolute URI (ErrTarget); the token gets all of them.
//   - Scope: the requested scopes, each in the subject token's scope
//     (ErrScope); none requested means all of the subject's. Nothing
//     widens.
//   - Lifetime: the shortest of the request, r.MaxLifetime and the subject
//     token's remaining lifetime.
//   - act: the caller, with the subject token's act nested; at most
//     r.MaxActDepth actors, else ErrGrant (the subject token cannot be
//     delegated further).
//   - An actor token must be the caller's own: sub is the caller and
//     cnf.x5t#S256 its certificate, else ErrGrant.
//   - cnf.x5t#S256 is the caller's certificate.
//   - A transaction token's txn, tctx and rctx carry over, for
//     Minter.TxnToken.
func (r Rules) Exchange(now time.Time, req Request) (*token.Claims, error) {
	if req.Subject == nil {
		return nil, broken(ErrRequest, "subject_token is required")
	}
	aud, want, err := r.request(req)
	if err != nil {
		return nil, err
	}
	if err := r.grant(now, req); err != nil {
		return nil, err
	}
	scope, err := narrow(want, req.Subject.Scope)
	if err != nil {
		return nil, err
	}
	c := r.issue(now, req, aud, scope, req.Subject.Expiry)
	c.Subject, c.SubjectIssuer = req.Subject.Subject, req.Subject.SubjectIssuer
	c.Actor = &token.Actor{Subject: req.Caller.ID, Actor: req.Subject.Actor}
	if req.Subject.Type == token.TxnToken {
		c.Txn, c.TxnContext, c.RequestContext = req.Subject.Txn, req.Subject.TxnContext, req.Subject.RequestContext
	}
	return c, nil
}

// ClientCredentials returns the claims of a token for the caller itself:
// sub and client_id are the caller, audience and lifetime as for
// Exchange, scope as requested. Like Exchange it is pure.
func (r Rules) ClientCredentials(now time.Time, req Request) (*token.Claims, error) {
	aud, want, err := r.request(req)
	if err != nil {
		return nil, err
	}
	if req.Subject != nil || req.Actor != nil {
		return nil, broken(ErrRequest, "client_credentials takes no subject_token or actor_token")
	}
	c := r.issue(now, req, aud, want, time.Time{})
	c.Subject = req.Caller.ID
	return c, nil
}

// parseScope splits a scope parameter (RFC 6749 §3.3) into distinct scope
// tokens, in order; a malformed one is ErrScope.
func parseScope(s string) ([]string, error) {
	var out []string
	for _, tok := range strings.Split(s, " ") {
		if tok == "" || slices.Contains(out, tok) {
			continue
		}
		if !scopeToken(tok) {
			return nil, broken(ErrScope, "scope is malformed (RFC 6749 section 3.3)")
		}
		out = append(out, tok)
	}
	if len(out) > maxScopes {
		return nil, broken(ErrScope, "at most %d scopes", maxScopes)
	}
	return out, nil
}

// request checks the rules, the caller and the request's parameters, and
// returns the audiences and the requested scopes.
func (r Rules) request(req Request) (aud, scope []string, err error) {
	switch {
	case r.MaxLifetime <= 0 || r.MaxActDepth < 1:
		return nil, nil, errors.New("signer: rules need MaxLifetime > 0 and MaxActDepth >= 1")
	case req.Caller.ID == "":
		return nil, nil, broken(ErrClient, "the client certificate carries no SPIFFE ID")
	case len(req.Caller.Thumbprint) != 43 || !isBase64URL(req.Caller.Thumbprint, false):
		return nil, nil, broken(ErrClient, "no client certificate thumbprint to bind the token to")
	case req.Lifetime < 0:
		return nil, nil, broken(ErrRequest, "the requested lifetime is negative")
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
		return nil, broken(ErrRequest, "audience or resource is required: every token is audience-restricted")
	case len(all) > maxTargets:
		return nil, broken(ErrRequest, "at most %d audience and resource parameters", maxTargets)
	}
	for i, t := range all {
		if t == "" || len(t) > maxTargetLen {
			return nil, broken(ErrRequest, "audience and resource values must be 1 to %d bytes", maxTargetLen)
		}
		if i >= len(audience) && !absoluteURI(t) {
			return nil, broken(ErrTarget, "resource must be an absolute URI without a fragment (RFC 8707)")
		}
	}
	slices.Sort(all)
	return slices.Compact(all), nil
}

func absoluteURI(s string) bool {
	u, err := url.Parse(s)
	return err == nil && u.IsAbs() && u.Fragment == "" && !strings.Contains(s, "#")
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
		return broken(ErrGrant, "subject_token was issued to another audience, not to the caller")
	case !sub.Expiry.After(now):
		return broken(ErrGrant, "subject_token has expired")
	case sub.Actor.Depth()+1 > r.MaxActDepth:
		return broken(ErrGrant, "subject_token's delegation chain already has %d actors, the most allowed", sub.Actor.Depth())
	}
	if a := req.Actor; a != nil && (a.Subject != caller.ID || a.Confirmation != caller.Thumbprint) {
		return broken(ErrGrant, "actor_token is not the caller's own (its sub and cnf must match the client certificate)")
	}
	if a := req.Actor; a != nil && !a.Expiry.After(now) {
		return broken(ErrGrant, "actor_token has expired")
	}
	return nil
}

// narrow returns the scope of the new token: want if it is within have,
// or all of have if want is empty.
func narrow(want, have []string) ([]string, error) {
	if len(want) == 0 {
		return slices.Clone(have), nil
	}
	for _, s := range want {
		if !slices.Contains(have, s) {
			return nil, broken(ErrScope, "scope %q is not in the subject token's scope: scopes only narrow", s)
		}
	}
	return want, nil
}

// issue fills in what every new token has; limit, if set, caps the expiry.
func (r Rules) issue(now time.Time, req Request, aud, scope []string, limit time.Time) *token.Claims {
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
	return &token.Claims{
		Type: token.AccessToken, Audience: aud, Scope: scope, ClientID: c.ID, Confirmation: c.Thumbprint,
		Evidence: c.Evidence, Policy: c.Policy, IssuedAt: now, NotBefore: now, Expiry: exp.Truncate(time.Second),
	}
}
