package tokens

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/signer"
	"github.com/sigil-dev/sigil/token"
)

// Introspection is an RFC 7662 introspection response. An inactive token
// has Active false and nothing else.
type Introspection struct {
	Active    bool                `json:"active"`
	Scope     string              `json:"scope,omitempty"`
	ClientID  string              `json:"client_id,omitempty"`
	TokenType string              `json:"token_type,omitempty"` // "Bearer", or "N_A" for a transaction token
	Exp       int64               `json:"exp,omitempty"`
	Iat       int64               `json:"iat,omitempty"`
	Nbf       int64               `json:"nbf,omitempty"`
	Sub       string              `json:"sub,omitempty"`
	Aud       []string            `json:"aud,omitempty"`
	Iss       string              `json:"iss,omitempty"`
	JTI       string              `json:"jti,omitempty"`
	Act       *token.Actor        `json:"act,omitempty"` // RFC 8693 §4.1
	Cnf       *token.Confirmation `json:"cnf,omitempty"` // RFC 8705 §3.2: compare with the certificate the token was presented over

	// Extensions: the token's form (jwt, opaque or txn), and for JWTs the
	// claims of that name.
	Kind          string `json:"sigil_token_kind,omitempty"`
	Evidence      string `json:"sigil_evidence,omitempty"`
	Policy        string `json:"sigil_policy,omitempty"`
	SubjectIssuer string `json:"sigil_sub_iss,omitempty"`
	Txn           string `json:"txn,omitempty"`
	ReqWL         string `json:"req_wl,omitempty"`
}

// Introspect answers an RFC 7662 introspection request for token from the
// holder of caller. Only a party in the token's audience (for a
// transaction token, whose audience is the trust domain, any workload of
// ours), or an admin, learns about it; anyone else gets active:false, as for a token that is
// unknown, malformed, badly signed, expired or revoked (RFC 7662 §2.2 and
// §4: no answer tells an unauthorized caller whether a token is valid).
// Errors: invalid_client for the caller, or a store failure.
func (s *Service) Introspect(ctx context.Context, caller *x509.Certificate, token string) (*Introspection, error) {
	c, err := s.authenticate(ctx, caller)
	if err != nil {
		return nil, err
	}
	t, err := s.resolve(ctx, token)
	switch {
	case err != nil:
		return nil, err
	case t == nil:
		return &Introspection{}, nil
	case !s.admin(c) && !s.inAudience(c, t.record):
		s.log.InfoContext(ctx, "tokens: introspection by a party outside the audience", "jti", t.record.JTI, "caller", c.caller.ID)
		return &Introspection{}, nil
	case !s.now().Before(t.record.ExpiresAt):
		return &Introspection{}, nil
	}
	switch err := s.live(ctx, t.record, c); {
	case errors.Is(err, store.ErrRevoked):
		return &Introspection{}, nil
	case err != nil:
		return nil, err
	}
	return s.introspection(t), nil
}

// inAudience reports whether c is a party in rec's audience: named in it,
// or, for a transaction token, a workload of the trust domain it names
// (every client is: its certificate is ours).
func (s *Service) inAudience(c *client, rec store.Token) bool {
	return slices.Contains(rec.Aud, c.caller.ID) || rec.Kind == store.TokenTxn && slices.Contains(rec.Aud, s.txnAudience)
}

// live checks that rec is not revoked and that the certificate it is
// bound to (cnf) is on record and not revoked: revoking a certificate
// revokes its tokens with it, and this also refuses those of a
// certificate revoked before that cascade existed. A token that is not
// live is store.ErrRevoked. caller, if not nil, is the authenticated
// client of the request: a token bound to its certificate needs no
// second read, as authenticate found that certificate on record and not
// revoked.
func (s *Service) live(ctx context.Context, rec store.Token, caller *client) error {
	if rec.RevokedAt != nil {
		return store.ErrRevoked
	}
	if rec.Kind == store.TokenExternal || (caller != nil && rec.CNF == caller.caller.Thumbprint) {
		return nil
	}
	c, err := s.cfg.Store.CertificateByThumbprint(ctx, rec.CNF)
	switch {
	case errors.Is(err, store.ErrNotFound):
		s.log.WarnContext(ctx, "tokens: token bound to no certificate on record", "jti", rec.JTI)
		return store.ErrRevoked
	case err != nil:
		return fmt.Errorf("tokens: certificate of token %s: %w", rec.JTI, err)
	case c.RevokedAt != nil:
		s.log.InfoContext(ctx, "tokens: token's certificate revoked", "jti", rec.JTI, "serial", c.Serial, "reason", c.RevocationReason)
		return store.ErrRevoked
	}
	return nil
}

// presented is a token resolved to its record: a JWT of ours whose
// signature verified (claims set), or a reference token (claims nil).
type presented struct {
	record store.Token
	claims *token.Claims
}

// resolve finds the record of a presented token of ours, revoked or not.
// nil means the token is none of ours: unknown, malformed, badly signed,
// expired, of another issuer, or not on record.
func (s *Service) resolve(ctx context.Context, tok string) (*presented, error) {
	if tok == "" || len(tok) > signer.MaxTokenSize {
		return nil, nil
	}
	if !strings.Contains(tok, ".") {
		return s.resolveReference(ctx, tok)
	}
	typ, aud := peek(tok)
	if len(aud) == 0 {
		return nil, nil
	}
	// Any audience of the token will do for the Verifier: the signature
	// covers them all, and who may see the token is decided on its record.
	var c *token.Claims
	var err error
	switch token.Type(typ) {
	case token.AccessToken:
		c, err = s.cfg.Verifier.Verify(ctx, tok, aud[0])
	case token.TxnToken:
		c, err = s.cfg.Verifier.VerifyTxn(ctx, tok, aud[0])
	default:
		return nil, nil
	}
	if err != nil || c.Issuer != s.issuer {
		return nil, nil
	}
	rec, err := s.cfg.Store.Token(ctx, c.ID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, nil
	case err != nil:
		return nil, err
	case rec.Sub != c.Subject || rec.CNF != c.Confirmation || rec.Kind != kindOf[c.Type]:
		s.log.ErrorContext(ctx, "tokens: signed token differs from its record", "jti", c.ID)
		return nil, nil
	}
	return &presented{record: rec, claims: c}, nil
}

func (s *Service) resolveReference(ctx context.Context, handle string) (*presented, error) {
	digest, err := signer.ReferenceDigest(handle)
	if err != nil {
		return nil, nil
	}
	// Revoked or not: Introspect checks live, Revoke the record.
	rec, err := s.referenceByDigest(ctx, digest)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, nil
	case err != nil:
		return nil, err
	}
	return &presented{record: rec}, nil
}

// kindOf is the record kind of each JWT type.
var kindOf = map[token.Type]string{token.AccessToken: store.TokenJWT, token.TxnToken: store.TokenTxn}

// peek reads typ and aud of a JWT without verifying it, to pick how to
// verify it.
func peek(tok string) (typ string, aud []string) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return "", nil
	}
	var hdr struct {
		Typ string `json:"typ"`
	}
	var claims struct {
		Aud token.Audience `json:"aud"`
	}
	if decodePart(parts[0], &hdr) != nil || decodePart(parts[1], &claims) != nil || len(claims.Aud) == 0 || claims.Aud[0] == "" {
		return "", nil
	}
	return strings.TrimPrefix(strings.ToLower(hdr.Typ), "application/"), claims.Aud
}

func decodePart(part string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(part)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

func (s *Service) introspection(t *presented) *Introspection {
	r := t.record
	out := &Introspection{
		Active: true, Scope: r.Scope, ClientID: r.ClientID, TokenType: "Bearer",
		Exp: r.ExpiresAt.Unix(), Iat: r.IssuedAt.Unix(), Nbf: r.IssuedAt.Unix(), Sub: r.Sub, Aud: r.Aud,
		Iss: s.issuer, JTI: r.JTI, Act: token.NewActor(r.Act), Cnf: &token.Confirmation{X5tS256: r.CNF}, Kind: r.Kind,
	}
	if r.Kind == store.TokenTxn {
		out.TokenType = "N_A"
	}
	if c := t.claims; c != nil {
		out.Act, out.Nbf = c.Actor, c.NotBefore.Unix()
		out.Evidence, out.Policy, out.SubjectIssuer, out.Txn, out.ReqWL = c.Evidence, c.Policy, c.SubjectIssuer, c.Txn, c.RequestingWorkload
	}
	return out
}
