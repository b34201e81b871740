package signer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/sigil-dev/sigil/token"
)

// MaxTokenSize is the largest token Verifier parses, in bytes.
const MaxTokenSize = 8 << 10

// PublicKeys resolves our own verification keys; *KeySet satisfies it with
// its published keys.
type PublicKeys interface {
	Lookup(kid string) (PublicKey, bool)
}

// Verifier checks tokens of our issuer and of configured external issuers.
// It is safe for concurrent use. Every error it returns is a *TokenError.
type Verifier struct {
	ours     *issuer
	external map[string]*issuer
	o        *options
	headers  token.HeaderCache[header]
	sigs     *sigCache
}

// issuer is what the Verifier trusts of one issuer.
type issuer struct {
	name   string
	algs   []jose.SignatureAlgorithm
	types  []string // typ values accepted by Verify
	lookup func(ctx context.Context, kid string) (PublicKey, error)
	ext    *ExternalIssuer // nil for ours
}

// NewVerifier returns a Verifier for tokens issued by iss and signed with
// keys (ES256, ES384 or PS256). Options: WithLeeway, WithExternalIssuers,
// WithClock, WithLogger.
func NewVerifier(iss string, keys PublicKeys, opts ...Option) (*Verifier, error) {
	o, err := newOptions(opts)
	if err != nil {
		return nil, err
	}
	if iss == "" || keys == nil {
		return nil, errors.New("signer: NewVerifier needs an issuer and its keys")
	}
	v := &Verifier{o: o, external: map[string]*issuer{}, sigs: newSigCache(maxCachedSignatures)}
	v.ours = &issuer{name: iss, algs: ourAlgs, types: []string{string(token.AccessToken)}, lookup: ownKeys(keys)}
	for _, e := range o.external {
		if e.Issuer == iss || v.external[e.Issuer] != nil {
			return nil, fmt.Errorf("signer: external issuer %q: Issuer: configured twice", e.Issuer)
		}
		x, err := newExternal(e, o)
		if err != nil {
			return nil, err
		}
		v.external[e.Issuer] = x
	}
	return v, nil
}

var errUnknownKID = errors.New("no published key with this kid")

func ownKeys(keys PublicKeys) func(context.Context, string) (PublicKey, error) {
	return func(_ context.Context, kid string) (PublicKey, error) {
		if k, ok := keys.Lookup(kid); ok {
			return k, nil
		}
		return PublicKey{}, errUnknownKID
	}
}

// Verify checks an access token (typ at+jwt, or for an external issuer a
// typ it is configured with) issued to audience, and returns its claims.
func (v *Verifier) Verify(ctx context.Context, tok, audience string) (*token.Claims, error) {
	return v.verify(ctx, tok, audience, token.AccessToken)
}

// VerifyTxn checks a transaction token (typ txntoken+jwt) of our issuer
// issued to audience, and returns its claims.
func (v *Verifier) VerifyTxn(ctx context.Context, tok, audience string) (*token.Claims, error) {
	return v.verify(ctx, tok, audience, token.TxnToken)
}

func (v *Verifier) verify(ctx context.Context, tok, audience string, want token.Type) (*token.Claims, error) {
	c, err := v.check(ctx, tok, audience, want)
	if err != nil {
		v.o.log.InfoContext(ctx, "signer: token rejected", "kind", err.Kind, "reason", err.Reason, "err", err.Err)
		return nil, err
	}
	return c, nil
}

func (v *Verifier) check(ctx context.Context, tok, audience string, want token.Type) (*token.Claims, *TokenError) {
	p, err := v.parse(tok)
	if err != nil {
		return nil, err
	}
	iss, err := v.issuerOf(p, want)
	if err != nil {
		return nil, err
	}
	known, err := iss.verifySignature(ctx, p, v.sigs)
	if err != nil {
		return nil, err
	}
	if !p.cached {
		v.headers.Put(p.segment, p.header)
	}
	c := known.claimsCopy()
	if c == nil {
		if c, err = iss.claims(p.payload, want); err != nil {
			return nil, err
		}
		if iss.ext != nil { // an external token's claims are plain values: see verified
			known.claims = externalCopy(c)
			v.sigs.add(p.digest, known)
		}
	}
	return c, v.validate(c, audience, iss)
}

// parsed is a compact JWS taken apart, before its signature is checked.
type parsed struct {
	header
	iss       string
	segment   string            // the protected header as sent, base64url
	cached    bool              // header came from v.headers
	payload   []byte            // decoded; trusted only once the signature verified
	signature []byte            // decoded
	input     string            // the signing input: header.payload as sent
	digest    [sha256.Size]byte // of the whole token as sent
}

// header is what the Verifier reads of a protected header.
type header struct {
	alg string
	kid string
	typ string // lower case, without "application/"
}

// parse checks the shape of token and reads its header and issuer. The
// header of a token whose signature verified is kept (v.headers, by its
// base64url text), so that an issuer's tokens do not parse the same
// header again.
func (v *Verifier) parse(token string) (*parsed, *TokenError) {
	switch {
	case len(token) > MaxTokenSize:
		return nil, malformed("token too large", nil)
	case strings.Count(token, ".") == 4:
		return nil, malformed("encrypted tokens (JWE) are not accepted", nil)
	case strings.Count(token, ".") != 2:
		return nil, malformed("not a compact JWS", nil)
	case !isBase64URL(token, true):
		return nil, malformed("not base64url", nil)
	}
	i, j := strings.IndexByte(token, '.'), strings.LastIndexByte(token, '.')
	p := &parsed{segment: token[:i], input: token[:j], digest: sha256.Sum256([]byte(token))}
	var err error
	for _, f := range []struct {
		dst *[]byte
		s   string
	}{{&p.payload, token[i+1 : j]}, {&p.signature, token[j+1:]}} {
		if *f.dst, err = base64.RawURLEncoding.Strict().DecodeString(f.s); err != nil {
			return nil, malformed("not base64url", err)
		}
	}
	var terr *TokenError
	p.header, p.cached = v.headers.Get(p.segment)
	if !p.cached {
		if p.header, terr = readHeader(p.segment); terr != nil {
			return nil, terr
		}
	}
	// A token whose very bytes verified before (its digest is in v.sigs)
	// passed readIssuer then, and has the same iss now: it is not decoded
	// from the claims again. Everything after parse still runs.
	if known, ok := v.sigs.peek(p.digest); ok {
		p.iss = known.iss
	} else if p.iss, terr = readIssuer(p.payload); terr != nil {
		return nil, terr
	}
	return p, nil
}

// refused are header parameters that would let the token choose its key or
// change how it is processed.
var refused = []string{"jwk", "jku", "x5u", "x5c", "crit", "b64"}

// readHeader decodes and reads a protected header: a JSON object without
// duplicate members or refused parameters, whose alg, kid and typ, if
// present, are strings.
func readHeader(segment string) (header, *TokenError) {
	b, err := base64.RawURLEncoding.Strict().DecodeString(segment)
	if err != nil {
		return header{}, malformed("not base64url", err)
	}
	hdr, err := jsonObject(b)
	if err != nil {
		return header{}, malformed("header is not a JSON object", err)
	}
	for _, name := range refused {
		if _, ok := hdr[name]; ok {
			return header{}, invalid("header parameter "+name+" not accepted", nil)
		}
	}
	var h header
	for _, f := range []struct {
		name string
		dst  *string
	}{{"alg", &h.alg}, {"kid", &h.kid}, {"typ", &h.typ}} {
		if v, ok := hdr[f.name]; ok && json.Unmarshal(v, f.dst) != nil {
			return header{}, invalid("header parameter "+f.name+" is not a string", nil)
		}
	}
	h.typ = strings.TrimPrefix(strings.ToLower(h.typ), "application/")
	return h, nil
}

// readIssuer reads iss from the claims, which must be a JSON object.
func readIssuer(payload []byte) (string, *TokenError) {
	if !bytes.HasPrefix(bytes.TrimSpace(payload), []byte("{")) {
		return "", malformed("claims are not a JSON object", nil)
	}
	var iss struct {
		Iss string `json:"iss"`
	}
	err := json.Unmarshal(payload, &iss) // checks the whole object's syntax first
	var syntax *json.SyntaxError
	switch {
	case errors.As(err, &syntax):
		return "", malformed("claims are not a JSON object", nil)
	case err != nil || iss.Iss == "":
		return "", invalid("missing or bad iss", err)
	}
	return iss.Iss, nil
}

// issuerOf finds the issuer of p and checks typ and alg against it.
func (v *Verifier) issuerOf(p *parsed, want token.Type) (*issuer, *TokenError) {
	iss := v.external[p.iss]
	switch {
	case p.iss == v.ours.name:
		iss = v.ours
	case iss == nil || want != token.AccessToken:
		return nil, invalid("unknown issuer", nil)
	}
	types := iss.types
	if want != token.AccessToken {
		types = []string{string(want)}
	}
	switch {
	case !slices.Contains(types, p.typ):
		return nil, invalid("missing or wrong typ", nil)
	case !slices.Contains(iss.algs, jose.SignatureAlgorithm(p.alg)):
		return nil, invalid("algorithm not allowed", nil)
	case p.kid == "":
		return nil, invalid("missing kid", nil)
	}
	return iss, nil
}

// verifySignature checks the signature with the issuer's key for the kid
// (token.VerifySignature, the standard library's JWS algorithms; alg is
// already on the issuer's allow-list) and returns what it verified with.
// The key is resolved on every call; only the signature check itself is
// skipped for a token whose signature verified before with that same key
// (sigs), and then what is returned holds the token's claims if they were
// cached with it.
func (iss *issuer) verifySignature(ctx context.Context, p *parsed, sigs *sigCache) (verified, *TokenError) {
	key, err := iss.lookup(ctx, p.kid)
	if err != nil {
		return verified{}, invalid("unknown key id", err)
	}
	if !key.Suits(p.alg) {
		return verified{}, invalid("key does not match algorithm", nil)
	}
	v := verified{iss: iss.name, kid: p.kid, alg: p.alg, key: key.Key}
	if known, ok := sigs.get(p.digest, v); ok {
		return known, nil
	}
	if err := token.VerifySignature(p.alg, key.Key, p.input, p.signature); err != nil {
		return verified{}, invalid("bad signature", err)
	}
	sigs.add(p.digest, v)
	return v, nil
}

// claims decodes a verified payload.
func (iss *issuer) claims(payload []byte, want token.Type) (*token.Claims, *TokenError) {
	if iss.ext != nil {
		return iss.ext.claims(payload)
	}
	c := &token.Claims{Type: want}
	if err := json.Unmarshal(payload, c); err != nil {
		return nil, invalid("bad claims", err)
	}
	switch {
	case c.IssuedAt.IsZero() || c.ID == "":
		return nil, invalid("missing iat or jti", nil)
	case want == token.TxnToken && (c.Txn == "" || c.RequestingWorkload == "" || len(c.Scope) == 0):
		return nil, invalid("missing txn, req_wl or scope", nil)
	}
	if err := c.CheckIdentities(); err != nil {
		return nil, invalid("sub or act names an identity sigil does not issue", err)
	}
	return c, nil
}

// validate checks audience, times and the claims every token needs.
func (v *Verifier) validate(c *token.Claims, audience string, iss *issuer) *TokenError {
	now, leeway := v.o.clock(), v.o.leeway
	switch {
	case c.Issuer != iss.name:
		return invalid("unknown issuer", nil)
	case c.Subject == "":
		return invalid("missing sub", nil)
	case audience == "" || !slices.Contains(c.Audience, audience):
		return invalid("wrong audience", nil)
	case c.Expiry.IsZero():
		return invalid("missing exp", nil)
	case !now.Before(c.Expiry.Add(leeway)):
		return invalid("expired", nil)
	case !c.NotBefore.IsZero() && now.Add(leeway).Before(c.NotBefore):
		return invalid("not yet valid", nil)
	case !c.IssuedAt.IsZero() && now.Add(leeway).Before(c.IssuedAt):
		return invalid("issued in the future", nil)
	}
	return nil
}

// isBase64URL reports whether s has only base64url characters (and dots if
// dots is set). It reads every byte of a presented token: one table lookup
// each.
func isBase64URL(s string, dots bool) bool {
	allowed := base64URLByte
	if dots {
		allowed |= jwsDotByte
	}
	for i := 0; i < len(s); i++ {
		if base64URLBytes[s[i]]&allowed == 0 {
			return false
		}
	}
	return true
}

// base64URLBytes classes every byte: base64URLByte for the base64url
// alphabet (RFC 4648 §5), jwsDotByte for '.', zero for the rest.
var base64URLBytes = func() (t [256]uint8) {
	for _, c := range []byte("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") {
		t[c] = base64URLByte
	}
	t['.'] = jwsDotByte
	return t
}()

const (
	base64URLByte uint8 = 1 << iota
	jwsDotByte
)

// jsonObject decodes a JSON object, refusing duplicate member names and
// trailing data.
func jsonObject(b []byte) (map[string]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, errors.New("not a JSON object")
	}
	m := map[string]json.RawMessage{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, err
		}
		name, _ := t.(string)
		if _, dup := m[name]; dup {
			return nil, fmt.Errorf("duplicate member %q", name)
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		m[name] = v
	}
	if _, err := dec.Token(); err != nil {
		return nil, err
	}
	if len(bytes.TrimSpace(b[dec.InputOffset():])) != 0 {
		return nil, errors.New("trailing data after the JSON object")
	}
	return m, nil
}
