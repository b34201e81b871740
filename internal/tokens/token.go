package tokens

import (
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"

	"github.com/sigil-dev/sigil/attest"
	"github.com/sigil-dev/sigil/audit"
	"github.com/sigil-dev/sigil/policy"
	"github.com/sigil-dev/sigil/signer"
	"github.com/sigil-dev/sigil/token"
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

// AppendJSON appends r's JSON, the bytes json.Marshal writes for it
// (TestResponseJSONMatchesEncodingJSON), without reflection: the token
// endpoint writes one per request, and encoding/json checks every byte of
// the access token on its way.
func (r *Response) AppendJSON(b []byte) []byte {
	b = append(b, `{"access_token":`...)
	b = token.AppendJSONString(b, r.AccessToken)
	b = append(b, `,"issued_token_type":`...)
	b = token.AppendJSONString(b, r.IssuedTokenType)
	b = append(b, `,"token_type":`...)
	b = token.AppendJSONString(b, r.TokenType)
	b = append(b, `,"expires_in":`...)
	b = strconv.AppendInt(b, r.ExpiresIn, 10)
	if r.Scope != "" {
		b = append(b, `,"scope":`...)
		b = token.AppendJSONString(b, r.Scope)
	}
	return append(b, '}')
}

// LogIssued is the message of the Info line logged for every token
// issued, with its jti, kind, grant, parent, sub, client_id, aud, scope,
// exp and the ids of the policies that permitted it. It is the one line
// per request at Info, which sigild writes in batches.
const LogIssued = "tokens: issued"

// Token answers a token request (form, the POST body) from the holder of
// caller, the TLS-verified client certificate: client_credentials, a
// token for the caller itself, or an RFC 8693 token exchange. The token
// is recorded and audited before it is returned. Errors: *Error with the
// OAuth code (InvalidClient: HTTP 401, others 400); ErrNotRecorded (503);
// hsm.ErrUnavailable or signer.ErrStale when the key cannot sign (503);
// anything else is a server error.
//
// The steps run in the order of the package documentation; each returns
// what it found, and oauthError alone turns a failure into the OAuth
// error.
func (s *Service) Token(ctx context.Context, caller *x509.Certificate, form url.Values) (*Response, error) {
	resp, err := s.token(ctx, caller, form)
	return resp, oauthError(err)
}

func (s *Service) token(ctx context.Context, cert *x509.Certificate, form url.Values) (*Response, error) {
	// 1. Parse: who asks, for what. The certificate's revocation is
	// checked again when the token is recorded (step 5).
	c, err := s.authenticateIssuing(ctx, cert)
	if err != nil {
		return nil, err
	}
	f, err := parseTokenForm(form, c.caller.ID)
	if err != nil {
		return nil, err
	}
	// 2. Facts: the caller's device, the subject and actor tokens.
	facts, err := s.deviceFacts(ctx, c)
	if err != nil {
		return nil, err
	}
	var sub *subject
	if f.grant == GrantTokenExchange {
		if sub, err = s.subject(ctx, c, f); err != nil {
			return nil, err
		}
	}
	// 3. Decide: the exchange rules, then policy, then the token's form.
	claims, err := s.rules(c, f, sub)
	if err != nil {
		return nil, err
	}
	permits, err := permit(s.cfg.Policy, tokenRequest(c, facts, sub), claims, f.askedScope())
	if err != nil {
		return nil, err
	}
	opaque, err := s.form(f, claims)
	if err != nil {
		return nil, err
	}
	// 4. Mint.
	m, err := s.mint(ctx, f, claims, opaque)
	if err != nil {
		return nil, err
	}
	// 5. Record, with the audit entry, before answering. The token is bound
	// to the caller's certificate, so that recording it checks that the
	// certificate is not revoked (authenticateIssuing relies on it).
	if m.record.CNF == "" || m.record.CNF != c.caller.Thumbprint {
		return nil, fmt.Errorf("tokens: token %s not bound to the client certificate (cnf %q)", m.record.JTI, m.record.CNF)
	}
	kind := audit.TokenIssued
	if sub != nil {
		kind, m.record.ParentJTI = audit.TokenExchanged, sub.parent
	}
	if err := s.record(ctx, kind, m.record, permits, sub.externalRecord(claims.IssuedAt)); err != nil {
		s.forget(cert)
		return nil, err
	}
	// Attributes, not key-value pairs: once per exchange, and the strings
	// and time then need no allocation each.
	s.log.LogAttrs(ctx, slog.LevelInfo, LogIssued, slog.String("jti", m.record.JTI), slog.String("kind", m.record.Kind),
		slog.String("grant", f.grant), slog.String("parent", m.record.ParentJTI), slog.String("sub", m.record.Sub),
		slog.String("client_id", c.caller.ID), slog.Any("aud", m.record.Aud), slog.String("scope", m.record.Scope),
		slog.Time("exp", m.record.ExpiresAt), slog.Any("policies", permits))
	return s.response(m), nil
}

// deviceFacts derives the policy facts of the caller's device. Evidence
// that no longer verifies is an attest step error (access_denied).
func (s *Service) deviceFacts(ctx context.Context, c *client) (policy.DeviceFacts, error) {
	facts, err := s.facts.get(ctx, c)
	if attest.StepOf(err) != "" {
		s.log.WarnContext(ctx, "tokens: client's attestation evidence no longer verifies", "serial", c.record.Serial, "err", err)
	}
	return facts, err
}

// rules applies signer's exchange rules (or client_credentials') to the
// request: the new token's claims, before policy.
func (s *Service) rules(c *client, f *tokenForm, sub *subject) (*token.Claims, error) {
	r := signer.Rules{MaxLifetime: s.cfg.MaxLifetime, MaxActDepth: s.cfg.MaxActDepth}
	req := signer.Request{
		Caller: c.caller, Audience: f.audience, Resource: f.resource, Scope: f.scope, Lifetime: s.cfg.DefaultTTL,
	}
	if sub == nil {
		return r.ClientCredentials(s.now(), req)
	}
	req.Subject, req.Actor = sub.claims, sub.actor
	if f.wantTxnToken {
		req.TxnContext, req.RequestContext = f.requestDetails, f.requestContext
		return r.Transaction(s.now(), req, s.txnAudience)
	}
	return r.Exchange(s.now(), req)
}

// tokenRequest is the policy request about c's token, with the facts of
// its device and the subject token it acts for, if any.
func tokenRequest(c *client, facts policy.DeviceFacts, sub *subject) policy.TokenRequest {
	req := policy.TokenRequest{Caller: policy.Caller{SPIFFEID: c.caller.ID, PolicyVersion: c.record.PolicyVersion, Device: facts}}
	if sub != nil {
		st := sub.claims
		req.Subject = &policy.Subject{Issuer: st.Issuer, Sub: st.Subject, Scopes: st.Scope, ActChain: st.Actor.Chain()}
	}
	return req
}
