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

// extWire is the JSON of an external token: the standard claims only;
// sigil's own claims, cnf and txn claims of an external issuer are ignored.
type extWire struct {
	Aud      token.Audience     `json:"aud"`
	Exp      *token.NumericDate `json:"exp"`
	Nbf      *token.NumericDate `json:"nbf"`
	Iat      *token.NumericDate `json:"iat"`
	Jti      string             `json:"jti"`
	ClientID string             `json:"client_id"`
	Act      *token.Actor       `json:"act"`
}

func (e *ExternalIssuer) claims(payload []byte) (*token.Claims, *TokenError) {
	var w extWire
	var m map[string]json.RawMessage
	if json.Unmarshal(payload, &w) != nil || json.Unmarshal(payload, &m) != nil {
		return nil, invalid("bad claims", nil)
	}
	var sub string
	if json.Unmarshal(m[e.SubjectClaim], &sub) != nil || sub == "" {
		return nil, invalid("missing sub", nil)
	}
	if strings.HasPrefix(strings.ToLower(sub), "spiffe:") {
		return nil, invalid("external subject is a SPIFFE ID", nil)
	}
	scope, err := scopeClaim(m[e.ScopeClaim])
	if err != nil {
		return nil, invalid("bad scope claim", err)
	}
	return &token.Claims{
		Type: token.AccessToken, Issuer: e.Issuer, Subject: sub, Audience: w.Aud, ID: w.Jti, ClientID: w.ClientID,
		Scope: scope, Actor: w.Act, SubjectIssuer: e.Issuer,
		Expiry: w.Exp.Time(), NotBefore: w.Nbf.Time(), IssuedAt: w.Iat.Time(),
	}, nil
}

// scopeClaim reads a space-separated string or an array of strings.
func scopeClaim(raw json.RawMessage) ([]string, error) {
	if raw == nil {
		return nil, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return strings.Fields(s), nil
	}
	var list []string
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, err
	}
	return list, nil
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
