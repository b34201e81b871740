package client

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"golang.org/x/sync/singleflight"

	"github.com/sigil-dev/sigil/verify"
)

// Token cache bounds.
const (
	maxCachedTokens = 10000
	fetchTimeout    = 30 * time.Second
	// refreshAt is the fraction of a token's lifetime after which the cache
	// fetches a new one.
	refreshAt = 0.8
)

type subjectKey struct{}

// WithSubjectToken returns ctx under which Transport exchanges token
// (RFC 8693) instead of using the one verify's Middleware put in the
// context: for a token from another issuer, such as a user's from an IdP,
// that sigild accepts as a subject.
func WithSubjectToken(ctx context.Context, token string) context.Context {
	return context.WithValue(ctx, subjectKey{}, token)
}

// subjectToken is the token a request is made on behalf of: the one given
// with WithSubjectToken, else the one verify's Middleware verified.
func subjectToken(ctx context.Context) string {
	if t, ok := ctx.Value(subjectKey{}).(string); ok {
		return t
	}
	if c, ok := verify.FromContext(ctx); ok {
		return c.Token()
	}
	return ""
}

// Transport is a RoundTripper for calls to the workload server: mTLS with
// the TPM key, the server checked by its SPIFFE ID, and an access token for
// server with scope attached to every request. The token is the
// workload's own (client_credentials), or, when the request's context
// carries a subject token (WithSubjectToken, or verify's Middleware on the
// incoming request), one exchanged for it, so the call is made on the
// subject's behalf with the delegation chain in act. A transaction token
// in the context (WithTxnToken, or verify's Middleware on the incoming
// request) goes along in the Txn-Token header to a server of the
// workload's own trust domain, never beyond it.
//
// Tokens are cached per (certificate, audience, scope, subject) until 80%
// of their lifetime, with one fetch in flight per key. A 401 invalid_token
// answer drops the cached token (the next request fetches another); the
// request itself is not retried. Requests to anything but https are
// refused, so a token never travels in the clear.
func (c *Client) Transport(server spiffeid.ID, scope ...string) http.RoundTripper {
	s := slices.Clone(scope)
	slices.Sort(s)
	return &transport{c: c, server: server, scope: slices.Compact(s)}
}

type transport struct {
	c      *Client
	server spiffeid.ID
	scope  []string
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme != "https" {
		closeBody(req)
		return nil, fmt.Errorf("client: refusing to send a token to %s: not https", req.URL.Redacted())
	}
	id := t.c.w.cur.Load()
	subject := subjectToken(req.Context())
	key := cacheKey{thumb: id.thumb, audience: t.server.String(), scope: strings.Join(t.scope, " "), subject: subjectDigest(subject)}
	token, err := t.c.tokens.get(req.Context(), key, func(ctx context.Context) (*TokenResponse, error) {
		return t.c.w.token(ctx, id, TokenRequest{Audience: []string{key.audience}, Scope: t.scope, SubjectToken: subject})
	})
	if err != nil {
		closeBody(req)
		return nil, fmt.Errorf("client: token for %s: %w", t.server, err)
	}
	out := req.Clone(req.Context())
	out.Header.Set("Authorization", "Bearer "+token)
	if t.server.MemberOf(t.c.ID().TrustDomain()) { // a transaction token never leaves its trust domain
		withTxnHeader(req.Context(), out)
	}
	resp, err := id.peer(t.c, t.server).RoundTrip(out)
	if err == nil && resp.StatusCode == http.StatusUnauthorized &&
		strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.c.tokens.forget(key, token)
	}
	return resp, err
}

// closeBody closes the body of a request RoundTrip does not send, as an
// http.RoundTripper must (http.Client leaves it to the RoundTripper).
func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}

// peer returns id's transport to server: it presents id's certificate, the
// one id's tokens are bound to, whatever renewals happen meanwhile.
func (id *identity) peer(c *Client, server spiffeid.ID) *http.Transport {
	id.peers.mu.Lock()
	defer id.peers.mu.Unlock()
	if tr, ok := id.peers.m[server]; ok {
		return tr
	}
	cfg := tlsconfig.MTLSClientConfig(identitySVID(id, c.w), c, tlsconfig.AuthorizeID(server))
	cfg.MinVersion = tls.VersionTLS13
	c.withRevocation(cfg)
	tr := &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true, IdleConnTimeout: idleConnTimeout, MaxIdleConnsPerHost: maxIdleConnsPerHost}
	if id.peers.m == nil {
		id.peers.m = make(map[spiffeid.ID]*http.Transport)
	}
	id.peers.m[server] = tr
	return tr
}

// cacheKey names a cached token; subject is subjectDigest of the subject
// token, "" for the workload's own.
type cacheKey struct{ thumb, audience, scope, subject string }

func subjectDigest(token string) string {
	if token == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

type cachedToken struct {
	token     string
	refresh   time.Time // fetch another from here on
	expiresAt time.Time
}

// tokenCache holds fetched tokens, at most maxCachedTokens, and lets one
// fetch per key run at a time.
type tokenCache struct {
	mu     sync.Mutex
	m      map[cacheKey]cachedToken
	flight singleflight.Group
	now    func() time.Time
	met    *metrics
}

func newTokenCache(met *metrics) *tokenCache {
	return &tokenCache{m: make(map[cacheKey]cachedToken), now: time.Now, met: met}
}

// get returns the cached token for k, or fetches one. The fetch outlives
// the first caller's cancellation (others may wait for it), bounded by
// fetchTimeout.
func (tc *tokenCache) get(ctx context.Context, k cacheKey, fetch func(context.Context) (*TokenResponse, error)) (string, error) {
	e, err := tc.entry(ctx, k, fetch)
	return e.token, err
}

// entry is get, with the token's expiry.
func (tc *tokenCache) entry(ctx context.Context, k cacheKey, fetch func(context.Context) (*TokenResponse, error)) (cachedToken, error) {
	tc.met.lookup()
	if e, ok := tc.fresh(k); ok {
		return e, nil
	}
	ch := tc.flight.DoChan(fmt.Sprint(k), func() (any, error) {
		if e, ok := tc.fresh(k); ok { // a flight that just ended fetched it
			return e, nil
		}
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fetchTimeout)
		defer cancel()
		issued := tc.now()
		resp, err := fetch(fctx)
		tc.met.fetched(err)
		if err != nil {
			return cachedToken{}, err
		}
		if resp.AccessToken == "" || resp.ExpiresIn <= 0 {
			return cachedToken{}, errors.New("client: token answer without access_token or expires_in")
		}
		life := time.Duration(resp.ExpiresIn) * time.Second
		e := cachedToken{token: resp.AccessToken, refresh: issued.Add(time.Duration(float64(life) * refreshAt)), expiresAt: issued.Add(life)}
		tc.put(k, e)
		return e, nil
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return cachedToken{}, r.Err
		}
		return r.Val.(cachedToken), nil
	case <-ctx.Done():
		return cachedToken{}, ctx.Err()
	}
}

// fresh returns the token cached for k unless it is due for refresh.
func (tc *tokenCache) fresh(k cacheKey) (cachedToken, bool) {
	tc.mu.Lock()
	e, ok := tc.m[k]
	tc.mu.Unlock()
	return e, ok && tc.now().Before(e.refresh)
}

func (tc *tokenCache) put(k cacheKey, e cachedToken) {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	if len(tc.m) >= maxCachedTokens {
		now := tc.now()
		for k, e := range tc.m {
			if !now.Before(e.expiresAt) {
				delete(tc.m, k)
			}
		}
		for k := range tc.m { // still full: drop arbitrary entries
			if len(tc.m) < maxCachedTokens {
				break
			}
			delete(tc.m, k)
		}
	}
	tc.m[k] = e
}

// forgetSubject drops every token fetched on behalf of subject.
func (tc *tokenCache) forgetSubject(subject string) {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	for k := range tc.m {
		if k.subject == subject {
			delete(tc.m, k)
		}
	}
}

// forget drops token, cached under k, unless another has replaced it.
func (tc *tokenCache) forget(k cacheKey, token string) {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	if tc.m[k].token == token {
		delete(tc.m, k)
	}
}
