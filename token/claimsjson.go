package token

import (
	"encoding/json"
	"strconv"
	"strings"
)

// claimsSize is a first guess at the size of a claims set: an access token
// of an exchange is about 700 bytes.
const claimsSize = 1024

// appendClaims appends c's JSON claims set to dst: the object encoding/json
// writes for wireClaims (the same members in the same order, absent ones
// left out, strings escaped alike), without its reflection. An exchange
// mints one per request; encoding/json spent about 25 allocations on it.
// TestClaimsJSONMatchesEncodingJSON holds the two to the same bytes.
func appendClaims(dst []byte, c *Claims) ([]byte, error) {
	o := object{b: append(dst, '{')}
	o.str("iss", c.Issuer)
	o.str("sub", c.Subject)
	if len(c.Audience) > 0 {
		o.key("aud")
		o.b = appendStrings(o.b, c.Audience)
	}
	o.date("exp", c.Expiry.IsZero(), c.Expiry.Unix())
	o.date("nbf", c.NotBefore.IsZero(), c.NotBefore.Unix())
	o.date("iat", c.IssuedAt.IsZero(), c.IssuedAt.Unix())
	o.str("jti", c.ID)
	o.str("client_id", c.ClientID)
	if len(c.Scope) > 0 {
		o.str("scope", strings.Join(c.Scope, " "))
	}
	if c.Confirmation != "" {
		o.key("cnf")
		inner := object{b: append(o.b, '{')}
		inner.str("x5t#S256", c.Confirmation)
		o.b = append(inner.b, '}')
	}
	if c.Actor != nil {
		o.key("act")
		o.b = appendActor(o.b, c.Actor)
	}
	if id := c.subjectID(); id != nil {
		o.key("sub_id")
		inner := object{b: append(o.b, '{')}
		inner.always("format", id.Format)
		inner.str("uri", id.URI)
		inner.str("iss", id.Iss)
		inner.str("sub", id.Sub)
		o.b = append(inner.b, '}')
	}
	o.str("sigil_sub_iss", c.SubjectIssuer)
	o.str("sigil_evidence", c.Evidence)
	o.str("sigil_policy", c.Policy)
	o.str("txn", c.Txn)
	o.str("req_wl", c.RequestingWorkload)
	if err := o.anyMap("tctx", c.TxnContext); err != nil {
		return nil, err
	}
	if err := o.anyMap("rctx", c.RequestContext); err != nil {
		return nil, err
	}
	return append(o.b, '}'), nil
}

// object appends the members of a JSON object, the commas between them.
type object struct {
	b    []byte
	more bool // a member was written
}

func (o *object) key(k string) {
	if o.more {
		o.b = append(o.b, ',')
	}
	o.more = true
	o.b = AppendJSONString(o.b, k)
	o.b = append(o.b, ':')
}

// str writes k: v unless v is empty (omitempty).
func (o *object) str(k, v string) {
	if v != "" {
		o.always(k, v)
	}
}

// always writes k: v, even empty.
func (o *object) always(k, v string) {
	o.key(k)
	o.b = AppendJSONString(o.b, v)
}

// date writes k: the NumericDate secs unless the time is zero.
func (o *object) date(k string, zero bool, secs int64) {
	if !zero {
		o.key(k)
		o.b = strconv.AppendInt(o.b, secs, 10)
	}
}

// anyMap writes k: m, unless m is empty, with encoding/json: transaction
// context is free-form, and only transaction tokens carry it.
func (o *object) anyMap(k string, m map[string]any) error {
	if len(m) == 0 {
		return nil
	}
	v, err := json.Marshal(m)
	if err != nil {
		return err
	}
	o.key(k)
	o.b = append(o.b, v...)
	return nil
}

// appendActor writes an act claim: sub always, iss and the nested act when
// present, as encoding/json writes Actor.
func appendActor(b []byte, a *Actor) []byte {
	o := object{b: append(b, '{')}
	o.always("sub", a.Subject)
	o.str("iss", a.Issuer)
	if a.Actor != nil {
		o.key("act")
		o.b = appendActor(o.b, a.Actor)
	}
	return append(o.b, '}')
}

// appendStrings writes a JSON array of strings.
func appendStrings(b []byte, ss []string) []byte {
	b = append(b, '[')
	for i, s := range ss {
		if i > 0 {
			b = append(b, ',')
		}
		b = AppendJSONString(b, s)
	}
	return append(b, ']')
}

// AppendJSONString appends s as a JSON string, the bytes encoding/json
// writes for it, for the encoders of fixed messages written without
// reflection (the claims set here, the token response in
// internal/tokens). Printable ASCII that encoding/json leaves as it is
// (all but " \ < > &) is copied; anything else, rare in claims, goes
// through encoding/json, so that every escape (HTML-safe, U+2028, invalid
// UTF-8) is exactly its.
func AppendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if !plainJSON[s[i]] {
			v, _ := json.Marshal(s) // a string always encodes
			return append(b, v...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// plainJSON marks the bytes encoding/json writes unescaped in a string.
var plainJSON = func() (t [256]bool) {
	for c := 0x20; c < 0x7f; c++ {
		t[c] = true
	}
	for _, c := range `"\<>&` {
		t[c] = false
	}
	return t
}()
