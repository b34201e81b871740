package token

import (
	"encoding/json"
	"slices"
	"strings"
	"time"
)

// Type is a JWT's "typ" header: what kind of token it is.
type Type string

// Token types sigil mints and verifies.
const (
	AccessToken Type = "at+jwt"       // RFC 9068 access token
	TxnToken    Type = "txntoken+jwt" // draft-ietf-oauth-transaction-tokens
	EventToken  Type = "secevent+jwt" // RFC 8417 Security Event Token (the revocation feed)
)

// Claims is the content of a token. Times have one-second precision and
// are the zero time when absent. Its JSON form is the claims set of the
// JWT; Type is the typ header, not a claim, and JSON leaves it alone.
type Claims struct {
	Type      Type      // the typ header
	Issuer    string    // iss
	Subject   string    // sub
	Audience  []string  // aud, always a JSON array when written
	IssuedAt  time.Time // iat
	NotBefore time.Time // nbf
	Expiry    time.Time // exp
	ID        string    // jti
	ClientID  string    // client_id: the client the token was issued to
	Scope     []string  // scope, space-separated in JSON

	// Confirmation is cnf.x5t#S256: the thumbprint of the certificate the
	// token is bound to (RFC 8705), see Thumbprint.
	Confirmation string
	// Actor is act (RFC 8693 §4.1): the current actor, with the previous
	// ones nested inside.
	Actor *Actor

	// SubjectIssuer (sigil_sub_iss) names the external issuer that vouched
	// for Subject; empty when the subject is sigild's own. The JSON form
	// also restates both as sub_id (RFC 9493, see subjectID).
	SubjectIssuer string
	Evidence      string // sigil_evidence: the caller's attestation evidence digest
	Policy        string // sigil_policy: the policy version that admitted the caller

	// Transaction tokens only (draft-ietf-oauth-transaction-tokens-10).
	Txn                string         // txn: transaction id
	RequestingWorkload string         // req_wl: the workload that requested the transaction token
	TxnContext         map[string]any // tctx
	RequestContext     map[string]any // rctx
}

// HasAudience reports whether aud is one of the token's audiences.
func (c *Claims) HasAudience(aud string) bool { return slices.Contains(c.Audience, aud) }

// HasScope reports whether the token grants scope s.
func (c *Claims) HasScope(s string) bool { return slices.Contains(c.Scope, s) }

// wireClaims is the JSON form of Claims.
type wireClaims struct {
	Iss      string         `json:"iss,omitempty"`
	Sub      string         `json:"sub,omitempty"`
	Aud      Audience       `json:"aud,omitempty"`
	Exp      *NumericDate   `json:"exp,omitempty"`
	Nbf      *NumericDate   `json:"nbf,omitempty"`
	Iat      *NumericDate   `json:"iat,omitempty"`
	Jti      string         `json:"jti,omitempty"`
	ClientID string         `json:"client_id,omitempty"`
	Scope    string         `json:"scope,omitempty"`
	Cnf      *Confirmation  `json:"cnf,omitempty"`
	Act      *Actor         `json:"act,omitempty"`
	SubID    *subjectID     `json:"sub_id,omitempty"`
	SubIss   string         `json:"sigil_sub_iss,omitempty"`
	Evidence string         `json:"sigil_evidence,omitempty"`
	Policy   string         `json:"sigil_policy,omitempty"`
	Txn      string         `json:"txn,omitempty"`
	ReqWL    string         `json:"req_wl,omitempty"`
	Tctx     map[string]any `json:"tctx,omitempty"`
	Rctx     map[string]any `json:"rctx,omitempty"`
}

// Confirmation is the JSON of cnf (RFC 8705 §3.1): the thumbprint of the
// certificate a token is bound to. Claims carries it as Confirmation;
// introspection answers (RFC 7662) carry it as is.
type Confirmation struct {
	X5tS256 string `json:"x5t#S256,omitempty"`
}

// MarshalJSON writes the claims set; absent claims are left out. The
// object is wireClaims', written by appendClaims without reflection.
func (c Claims) MarshalJSON() ([]byte, error) {
	return appendClaims(make([]byte, 0, claimsSize), &c)
}

// UnmarshalJSON reads a claims set. Type is kept; every claim is replaced.
// sub_id is not read: it restates sub and sigil_sub_iss, which are.
func (c *Claims) UnmarshalJSON(b []byte) error {
	var w wireClaims
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*c = Claims{
		Type: c.Type, Issuer: w.Iss, Subject: w.Sub, Audience: w.Aud, ID: w.Jti, ClientID: w.ClientID,
		Scope: strings.Fields(w.Scope), Actor: w.Act, SubjectIssuer: w.SubIss,
		Evidence: w.Evidence, Policy: w.Policy, Txn: w.Txn, RequestingWorkload: w.ReqWL, TxnContext: w.Tctx, RequestContext: w.Rctx,
		Expiry: w.Exp.Time(), NotBefore: w.Nbf.Time(), IssuedAt: w.Iat.Time(),
	}
	if w.Cnf != nil {
		c.Confirmation = w.Cnf.X5tS256
	}
	return nil
}

// Actor is one level of an act claim (RFC 8693 §4.1): {"sub": ..., "act":
// {...}}, the current actor outermost.
type Actor struct {
	Subject string `json:"sub"`
	Issuer  string `json:"iss,omitempty"`
	Actor   *Actor `json:"act,omitempty"`
}

// NewActor nests chain, the current actor first, into an act claim; nil
// for an empty chain.
func NewActor(chain []string) *Actor {
	var a *Actor
	for i := len(chain) - 1; i >= 0; i-- {
		a = &Actor{Subject: chain[i], Actor: a}
	}
	return a
}

// Chain lists the subjects of the act claim, the current actor first;
// empty for nil.
func (a *Actor) Chain() []string {
	var out []string
	for ; a != nil; a = a.Actor {
		out = append(out, a.Subject)
	}
	return out
}

// Depth is the number of actors in the chain; 0 for nil.
func (a *Actor) Depth() int {
	n := 0
	for ; a != nil; a = a.Actor {
		n++
	}
	return n
}

// Valid reports whether every level names its subject; nil is valid.
func (a *Actor) Valid() bool {
	for ; a != nil; a = a.Actor {
		if a.Subject == "" {
			return false
		}
	}
	return true
}
