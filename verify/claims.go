package verify

import (
	"encoding/json"
	"errors"

	"github.com/sigil-dev/sigil/token"
)

// maxActDepth bounds the act chain read from a token.
const maxActDepth = 32

// Claims are a verified token's claims (token.Claims: Subject, Issuer,
// ClientID, Audience, Scope, ID, IssuedAt, Expiry, Confirmation, Actor,
// ...), with the token itself and its raw JSON. Verify has checked
// Confirmation against the peer's certificate.
type Claims struct {
	token.Claims

	raw   []byte // the JSON payload
	token string // the token itself
}

// Token returns the verified token itself, to exchange it when calling
// another service on the subject's behalf (client.Transport does).
func (c *Claims) Token() string { return c.token }

// A verified token's subject is a workload or a user, never both and never
// neither: c.IsWorkload() (sub is a SPIFFE ID that sigil attested) or
// c.IsUser() (sub is a user of the external issuer c.SubjectIssuer, an
// IdP, and no reading of it is a SPIFFE ID). Every actor in ActChain is a
// workload's SPIFFE ID, added by one of sigil's own exchanges.

// ActChain returns the delegation chain: the current actor first, then
// the one on whose behalf it acted, and so on; empty when the subject
// itself called.
func (c *Claims) ActChain() []string { return c.Actor.Chain() }

// Raw returns all the claims as decoded JSON.
func (c *Claims) Raw() map[string]any {
	var m map[string]any
	_ = json.Unmarshal(c.raw, &m)
	return m
}

// parseClaims decodes a verified payload.
func parseClaims(payload []byte, tok string) (*Claims, error) {
	c := &Claims{Claims: token.Claims{Type: token.AccessToken}, raw: payload, token: tok}
	if err := json.Unmarshal(payload, &c.Claims); err != nil {
		return nil, err
	}
	if !c.Actor.Valid() || c.Actor.Depth() > maxActDepth {
		return nil, errors.New("act: missing sub or too deep")
	}
	return c, nil
}
