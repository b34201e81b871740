package signer

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/sigil-dev/sigil/api"
)

// TokenType is a JWT's "typ" header: what kind of token it is.
type TokenType string

// Token types this package mints and verifies.
const (
	AccessToken TokenType = "at+jwt"       // RFC 9068 access token
	TxnToken    TokenType = "txntoken+jwt" // draft-ietf-oauth-transaction-tokens
)

// Token type identifiers of RFC 8693 §3 and the transaction token draft,
// for subject_token_type, actor_token_type, requested_token_type and
// issued_token_type.
const (
	TokenTypeAccessToken = api.TokenTypeAccessToken
	TokenTypeJWT         = api.TokenTypeJWT
	TokenTypeTxnToken    = api.TokenTypeTxnToken
)

// Claims is the content of a token: what Minter signs and what Verifier
// returns. Times have one-second precision.
type Claims struct {
	Type      TokenType // the typ header
	Issuer    string    // iss
	Subject   string    // sub
	Audience  []string  // aud, always a JSON array when minted
	IssuedAt  time.Time // iat
	NotBefore time.Time // nbf
	Expiry    time.Time // exp
	ID        string    // jti: 128 random bits, base64url
	ClientID  string    // client_id: the client the token was issued to
	Scope     []string  // scope, space-separated in JSON

	// Confirmation is cnf.x5t#S256: the thumbprint of the certificate the
	// token is bound to (RFC 8705), see Thumbprint.
	Confirmation string
	// Actor is act (RFC 8693 §4.1): the current actor, with the previous
	// ones nested inside.
	Actor *Actor

	// SubjectIssuer (sigil_sub_iss) names the external issuer that vouched
	// for Subject; empty when the subject is one of ours.
	SubjectIssuer string
	Evidence      string // sigil_evidence: the caller's attestation evidence digest
	Policy        string // sigil_policy: the policy version that admitted the caller

	// Transaction tokens only.
	Txn            string         // txn: transaction id
	TxnContext     map[string]any // tctx
	RequestContext map[string]any // rctx
}

// Actor is one level of an act claim: {"sub": ..., "act": {...}}.
type Actor struct {
	Subject string `json:"sub"`
	Issuer  string `json:"iss,omitempty"`
	Actor   *Actor `json:"act,omitempty"`
}

// Depth is the number of actors in the chain; 0 for nil.
func (a *Actor) Depth() int {
	n := 0
	for ; a != nil; a = a.Actor {
		n++
	}
	return n
}

// valid reports whether every level names its subject.
func (a *Actor) valid() bool {
	for ; a != nil; a = a.Actor {
		if a.Subject == "" {
			return false
		}
	}
	return true
}

// wireClaims is the JSON form of Claims.
type wireClaims struct {
	Iss      string         `json:"iss,omitempty"`
	Sub      string         `json:"sub,omitempty"`
	Aud      audience       `json:"aud,omitempty"`
	Exp      *numericDate   `json:"exp,omitempty"`
	Nbf      *numericDate   `json:"nbf,omitempty"`
	Iat      *numericDate   `json:"iat,omitempty"`
	Jti      string         `json:"jti,omitempty"`
	ClientID string         `json:"client_id,omitempty"`
	Scope    string         `json:"scope,omitempty"`
	Cnf      *confirmation  `json:"cnf,omitempty"`
	Act      *Actor         `json:"act,omitempty"`
	SubIss   string         `json:"sigil_sub_iss,omitempty"`
	Evidence string         `json:"sigil_evidence,omitempty"`
	Policy   string         `json:"sigil_policy,omitempty"`
	Txn      string         `json:"txn,omitempty"`
	Tctx     map[string]any `json:"tctx,omitempty"`
	Rctx     map[string]any `json:"rctx,omitempty"`
}

type confirmation struct {
	X5tS256 string `json:"x5t#S256,omitempty"`
}

func (c *Claims) wire() *wireClaims {
	w := &wireClaims{
		Iss: c.Issuer, Sub: c.Subject, Aud: c.Audience, Jti: c.ID, ClientID: c.ClientID,
		Scope: strings.Join(c.Scope, " "), Act: c.Actor, SubIss: c.SubjectIssuer,
		Evidence: c.Evidence, Policy: c.Policy, Txn: c.Txn, Tctx: c.TxnContext, Rctx: c.RequestContext,
		Exp: dateOf(c.Expiry), Nbf: dateOf(c.NotBefore), Iat: dateOf(c.IssuedAt),
	}
	if c.Confirmation != "" {
		w.Cnf = &confirmation{X5tS256: c.Confirmation}
	}
	return w
}

func (w *wireClaims) claims(typ TokenType) *Claims {
	c := &Claims{
		Type: typ, Issuer: w.Iss, Subject: w.Sub, Audience: w.Aud, ID: w.Jti, ClientID: w.ClientID,
		Scope: strings.Fields(w.Scope), Actor: w.Act, SubjectIssuer: w.SubIss,
		Evidence: w.Evidence, Policy: w.Policy, Txn: w.Txn, TxnContext: w.Tctx, RequestContext: w.Rctx,
		Expiry: w.Exp.time(), NotBefore: w.Nbf.time(), IssuedAt: w.Iat.time(),
	}
	if w.Cnf != nil {
		c.Confirmation = w.Cnf.X5tS256
	}
	return c
}

// audience is aud: written as an array, read as a string or an array.
type audience []string

func (a audience) MarshalJSON() ([]byte, error) { return json.Marshal([]string(a)) }

func (a *audience) UnmarshalJSON(b []byte) error {
	if bytes.HasPrefix(b, []byte(`"`)) {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*a = audience{s}
		return nil
	}
	return json.Unmarshal(b, (*[]string)(a))
}

// numericDate is a JWT NumericDate: seconds since the epoch. Fractions are
// dropped on reading.
type numericDate int64

// maxDate bounds NumericDates to year 5138, far inside time.Time's range.
const maxDate = 1 << 37

func dateOf(t time.Time) *numericDate {
	if t.IsZero() {
		return nil
	}
	d := numericDate(t.Unix())
	return &d
}

func (d *numericDate) time() time.Time {
	if d == nil {
		return time.Time{}
	}
	return time.Unix(int64(*d), 0).UTC()
}

func (d *numericDate) UnmarshalJSON(b []byte) error {
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil || math.IsNaN(f) || f < 0 || f >= maxDate {
		return errors.New("NumericDate must be a number of seconds since 1970")
	}
	*d = numericDate(f)
	return nil
}
