package signer

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/sigil-dev/sigil/token"
)

// ExternalIssuer is an issuer whose tokens the Verifier accepts as subject
// tokens, such as a user IdP. Its keys come from JWKS (a file's content) or
// from Fetch, which is called on first use, when a token names an unknown
// kid (at most once per MinRefresh) and when the keys are over an hour old.
type ExternalIssuer struct {
	Issuer string // exact iss value
	JWKS   []byte // a JWK Set; exactly one of JWKS and Fetch
	Fetch  func(ctx context.Context) ([]byte, error)

	// Algorithms is the allow-list: ES256, ES384, ES512, PS256, PS384,
	// PS512, RS256, RS384, RS512 or EdDSA. Required.
	Algorithms []string
	// Types are the typ values accepted, case-insensitive, without
	// "application/"; default at+jwt. Add "jwt" only for an IdP that
	// cannot do better.
	Types []string
	// SubjectClaim names the claim mapped to Subject (default "sub");
	// ScopeClaim the one mapped to Scope (default "scope"), a
	// space-separated string or an array of strings.
	SubjectClaim string
	ScopeClaim   string
	MinRefresh   time.Duration // default 1 minute
}

var externalAlgs = []string{"ES256", "ES384", "ES512", "PS256", "PS384", "PS512", "RS256", "RS384", "RS512", "EdDSA"}

// jwksMaxAge is how long fetched keys are used before fetching again.
const jwksMaxAge = time.Hour

func newExternal(e ExternalIssuer, o *options) (*issuer, error) {
	if err := e.normalise(); err != nil {
		return nil, fmt.Errorf("signer: external issuer %q: %w", e.Issuer, err)
	}
	iss := &issuer{name: e.Issuer, types: e.Types, ext: &e}
	for _, a := range e.Algorithms {
		iss.algs = append(iss.algs, jose.SignatureAlgorithm(a))
	}
	if e.Fetch != nil {
		r := &remoteKeys{fetch: e.Fetch, algs: e.Algorithms, min: e.MinRefresh, clock: o.clock, log: o.log, name: e.Issuer}
		iss.lookup = r.lookup
		return iss, nil
	}
	keys, err := token.ParseJWKS(e.JWKS, e.Algorithms)
	if err != nil {
		return nil, fmt.Errorf("signer: external issuer %q: %w", e.Issuer, err)
	}
	iss.lookup = func(_ context.Context, kid string) (PublicKey, error) {
		if k, ok := keys[kid]; ok {
			return k, nil
		}
		return PublicKey{}, errUnknownKID
	}
	return iss, nil
}

// normalise checks e and fills in defaults; errors name the field.
func (e *ExternalIssuer) normalise() error {
	switch {
	case e.Issuer == "":
		return errors.New("field Issuer is required")
	case (e.JWKS == nil) == (e.Fetch == nil):
		return errors.New("exactly one of the fields JWKS and Fetch is required")
	case len(e.Algorithms) == 0:
		return errors.New("field Algorithms is required")
	}
	for _, a := range e.Algorithms {
		if !slices.Contains(externalAlgs, a) {
			return fmt.Errorf("field Algorithms: %q not allowed (use %s)", a, strings.Join(externalAlgs, ", "))
		}
	}
	types := []string{string(token.AccessToken)}
	if len(e.Types) > 0 {
		types = make([]string, len(e.Types))
	}
	for i, t := range e.Types {
		types[i] = strings.TrimPrefix(strings.ToLower(t), "application/")
		if types[i] == "" {
			return errors.New("field Types: empty type")
		}
	}
	e.Types, e.Algorithms = types, slices.Clone(e.Algorithms)
	e.SubjectClaim = cmp.Or(e.SubjectClaim, "sub")
	e.ScopeClaim = cmp.Or(e.ScopeClaim, "scope")
	if e.MinRefresh <= 0 {
		e.MinRefresh = time.Minute
	}
	return nil
}

// claims reads a verified external payload. Every identity it puts in the
// claims is checked here, because the token service carries them into
// tokens of its own: the subject (token.CheckExternalSubject), the scope
// (RFC 6749 §3.3 tokens, so that a resource server splits it as policy
// saw it), and act, which sigil refuses: workload identities in a chain
// come only from sigil's own exchanges, and an IdP's delegation carried
// under another name would hide from a resource server that its user did
// not act alone. Of the rest, it reads aud, exp, nbf, iat and jti by their
// exact names; sigil's own claims, cnf, client_id and txn claims of an
// external issuer are ignored. Members must be unique: two readers of a
// claims set with one name twice may each pick a different one.
func (e *ExternalIssuer) claims(payload []byte) (*token.Claims, *TokenError) {
	m, err := jsonObject(payload)
	if err != nil {
		return nil, invalid("bad claims", err)
	}
	for name := range m {
		if strings.EqualFold(name, "act") {
			return nil, invalid("act claim of an external issuer not accepted", nil)
		}
	}
	c, terr := standardClaims(m)
	if terr != nil {
		return nil, terr
	}
	if json.Unmarshal(m[e.SubjectClaim], &c.Subject) != nil || c.Subject == "" {
		return nil, invalid("missing sub", nil)
	}
	if err := token.CheckExternalSubject(c.Subject); err != nil {
		return nil, invalid("external subject not accepted", err)
	}
	if c.Scope, err = scopeClaim(m[e.ScopeClaim]); err != nil {
		return nil, invalid("bad scope claim", err)
	}
	c.Issuer, c.SubjectIssuer = e.Issuer, e.Issuer
	return c, nil
}

// standardClaims reads aud, exp, nbf, iat and jti of an external token.
func standardClaims(m map[string]json.RawMessage) (*token.Claims, *TokenError) {
	var (
		aud           token.Audience
		exp, nbf, iat *token.NumericDate
		jti           string
	)
	for name, dst := range map[string]any{"aud": &aud, "exp": &exp, "nbf": &nbf, "iat": &iat, "jti": &jti} {
		if raw, ok := m[name]; ok && json.Unmarshal(raw, dst) != nil {
			return nil, invalid("bad claims", fmt.Errorf("claim %s", name))
		}
	}
	return &token.Claims{
		Type: token.AccessToken, Audience: aud, ID: jti, Expiry: exp.Time(), NotBefore: nbf.Time(), IssuedAt: iat.Time(),
	}, nil
}

// scopeClaim reads a string of scope tokens separated by single spaces
// (RFC 6749 §3.3) or an array of scope tokens, without duplicates. Any
// other separator or a byte outside a scope token is an error: the new
// token's scope is written space-separated, and must split into what
// policy was asked about.
func scopeClaim(raw json.RawMessage) ([]string, error) {
	if raw == nil {
		return nil, nil
	}
	var list []string
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		list = strings.Split(s, " ")
	} else if err := json.Unmarshal(raw, &list); err != nil {
		return nil, err
	}
	var out []string
	for _, tok := range list {
		switch {
		case tok == "" || slices.Contains(out, tok):
			continue
		case !scopeToken(tok):
			return nil, fmt.Errorf("scope %q is not an RFC 6749 scope token", tok)
		}
		out = append(out, tok)
	}
	return out, nil
}

// remoteKeys are an external issuer's keys, fetched at a bounded rate.
type remoteKeys struct {
	fetch func(ctx context.Context) ([]byte, error)
	algs  []string
	min   time.Duration
	clock func() time.Time
	log   *slog.Logger
	name  string
	mu    sync.Mutex // serialises fetches; guards tried
	tried time.Time
	keys  atomic.Pointer[fetchedKeys]
}

type fetchedKeys struct {
	byKID map[string]PublicKey
	at    time.Time
}

func (r *remoteKeys) lookup(ctx context.Context, kid string) (PublicKey, error) {
	cur := r.keys.Load()
	if cur != nil && r.clock().Sub(cur.at) < jwksMaxAge {
		if k, ok := cur.byKID[kid]; ok {
			return k, nil
		}
	}
	r.refresh(ctx)
	if cur = r.keys.Load(); cur != nil {
		if k, ok := cur.byKID[kid]; ok {
			return k, nil
		}
	}
	return PublicKey{}, errUnknownKID
}

// refresh fetches the keys unless a fetch was tried within min. On failure
// the previous keys stay.
func (r *remoteKeys) refresh(ctx context.Context) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.clock()
	if !r.tried.IsZero() && now.Sub(r.tried) < r.min {
		return
	}
	r.tried = now
	b, err := r.fetch(ctx)
	var keys map[string]PublicKey
	if err == nil {
		keys, err = token.ParseJWKS(b, r.algs)
	}
	if err != nil {
		r.log.WarnContext(ctx, "signer: fetch JWKS failed", "issuer", r.name, "err", err)
		return
	}
	r.keys.Store(&fetchedKeys{byKID: keys, at: now})
}
