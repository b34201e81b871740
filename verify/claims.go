package verify

import (
	"encoding/json"
	"errors"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// maxActDepth bounds the act chain read from a token.
const maxActDepth = 32

// Claims are a verified token's claims.
type Claims struct {
	Subject  string    // sub
	Issuer   string    // iss
	ClientID string    // client_id: the caller's SPIFFE ID
	Audience []string  // aud
	Scope    []string  // scope
	Actors   []string  // act chain, outermost (the current actor) first
	JTI      string    // jti
	IssuedAt time.Time // iat, zero if absent
	Expiry   time.Time // exp
	// Confirmation is cnf.x5t#S256, the thumbprint of the certificate the
	// token is bound to; Verify checked it against the peer's.
	Confirmation string

	raw   []byte // the JSON payload
	token string // the token itself
}

// Token returns the verified token itself, to exchange it when calling
// another service on the subject's behalf (client.Transport does).
func (c *Claims) Token() string { return c.token }

// HasScope reports whether the token grants scope s.
func (c *Claims) HasScope(s string) bool { return slices.Contains(c.Scope, s) }

// ActChain returns the delegation chain: the current actor first, then
// the one on whose behalf it acted, and so on; empty when the subject
// itself called.
func (c *Claims) ActChain() []string { return slices.Clone(c.Actors) }

// Raw returns all the claims as decoded JSON.
func (c *Claims) Raw() map[string]any {
	var m map[string]any
	_ = json.Unmarshal(c.raw, &m)
	return m
}

type wireClaims struct {
	Issuer   string       `json:"iss"`
	Subject  string       `json:"sub"`
	Audience audience     `json:"aud"`
	Expiry   *numericDate `json:"exp"`
	NotBef   *numericDate `json:"nbf"`
	IssuedAt *numericDate `json:"iat"`
	ID       string       `json:"jti"`
	ClientID string       `json:"client_id"`
	Scope    string       `json:"scope"`
	Cnf      *struct {
		X5t string `json:"x5t#S256"`
	} `json:"cnf"`
	Act *actor `json:"act"`
}

type actor struct {
	Sub string `json:"sub"`
	Act *actor `json:"act"`
}

func (w *wireClaims) claims(raw []byte) (*Claims, error) {
	c := &Claims{
		Subject: w.Subject, Issuer: w.Issuer, ClientID: w.ClientID, Audience: w.Audience,
		JTI: w.ID, Scope: strings.Fields(w.Scope), raw: raw,
	}
	if w.Cnf != nil {
		c.Confirmation = w.Cnf.X5t
	}
	if w.IssuedAt != nil {
		c.IssuedAt = w.IssuedAt.time()
	}
	if w.Expiry != nil {
		c.Expiry = w.Expiry.time()
	}
	for a := w.Act; a != nil; a = a.Act {
		if a.Sub == "" || len(c.Actors) == maxActDepth {
			return nil, errors.New("act: missing sub or too deep")
		}
		c.Actors = append(c.Actors, a.Sub)
	}
	return c, nil
}

// audience is aud: a string or an array of strings.
type audience []string

func (a *audience) UnmarshalJSON(b []byte) error {
	var err error
	if b[0] == '"' {
		*a = make(audience, 1)
		err = json.Unmarshal(b, &(*a)[0])
	} else {
		err = json.Unmarshal(b, (*[]string)(a))
	}
	if err != nil {
		return errors.New("aud: not a string or an array of strings")
	}
	return nil
}

// numericDate is a JWT NumericDate, seconds since the epoch.
type numericDate float64

// UnmarshalJSON reads a JSON number; b is a valid JSON value, so only a
// number parses as a float (not a string, true, false or null).
func (d *numericDate) UnmarshalJSON(b []byte) error {
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil || f < 0 || f > 1e11 {
		return errors.New("not a NumericDate")
	}
	*d = numericDate(f)
	return nil
}

func (d *numericDate) time() time.Time {
	sec, frac := math.Modf(float64(*d))
	return time.Unix(int64(sec), int64(frac*1e9))
}

// HasAudience reports whether the token is meant for aud.
func (c *Claims) HasAudience(aud string) bool { return slices.Contains(c.Audience, aud) }
