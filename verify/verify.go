package verify

import (
	"context"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sigil-dev/sigil/token"
)

// Limits and defaults.
const (
	MaxTokenSize      = 8 << 10 // bytes; longer tokens are refused unparsed
	DefaultLeeway     = 30 * time.Second
	DefaultMinRefresh = 30 * time.Second
	DefaultStaleness  = 30 * time.Second
	DefaultLifetime   = 24 * time.Hour
)

// DefaultAlgorithms are the algorithms of sigil's signing keys.
var DefaultAlgorithms = []string{"ES256", "ES384", "PS256"}

// Config configures a Verifier. Issuer, Audience and one of JWKSURL or
// JWKS are required.
type Config struct {
	Issuer   string // sigild's issuer URL, the tokens' iss
	Audience string // this service's SPIFFE ID; tokens' aud must contain it
	// TrustDomain is the aud of transaction tokens (VerifyTxn): the trust
	// domain's SPIFFE ID, spiffe://TRUST_DOMAIN. Default: Audience's.
	TrustDomain string

	// JWKSURL is the issuer's /jwks.json, fetched with Client. JWKS, if
	// set, is used instead.
	JWKSURL string
	JWKS    func(context.Context) ([]byte, error)
	// Client fetches the JWKS and the revocation feed; it should trust
	// sigild's CA and present this service's certificate (the feed needs
	// mTLS), and have no Timeout, which would cut the feed, one long
	// response, each time it ran out. Default http.DefaultClient.
	Client *http.Client

	Algorithms []string      // allowed; default DefaultAlgorithms
	Leeway     time.Duration // clock skew allowed on exp, nbf, iat; default 30s
	MinRefresh time.Duration // least time between JWKS fetches on unknown kid; default 30s
	// MaxLifetime is the longest token lifetime (exp-iat) accepted, and
	// how long a revocation is remembered; default 24h. It must be at least
	// sigild's maximum token lifetime.
	MaxLifetime time.Duration

	Revocation Revocation

	Log *slog.Logger // default slog.Default()
	// Registerer, if set, gets the verifier's metrics (sigil_verify_*,
	// labelled with Audience).
	Registerer prometheus.Registerer
	Now        func() time.Time
}

// Revocation configures how Verify learns of revoked tokens.
type Revocation struct {
	// FeedURL is sigild's /v1/revocations, a Server-Sent Events feed.
	FeedURL string
	// Introspect, if set, tells whether token is active (RFC 7662); used
	// while the feed is down, or always without a feed.
	Introspect func(ctx context.Context, token string) (active bool, err error)
	// MaxStaleness is how long the feed may be down before Verify fails
	// closed (when introspection cannot stand in); default 30s.
	MaxStaleness time.Duration
}

// Verifier verifies sigil access tokens for one audience.
type Verifier struct {
	cfg     Config
	keys    *keyCache
	headers token.HeaderCache[header]
	revs    *revocations
	met     *metrics // nil without Config.Registerer
	log     *slog.Logger
	cancel  context.CancelFunc
	done    chan struct{}
}

// New checks c, fetches the JWKS (an error if it cannot) and, with a
// revocation feed, starts following it until ctx ends or Close.
func New(ctx context.Context, c Config) (*Verifier, error) {
	if err := c.setDefaults(); err != nil {
		return nil, err
	}
	v := &Verifier{cfg: c, log: c.Log, done: make(chan struct{})}
	v.keys = &keyCache{fetch: c.JWKS, algs: c.Algorithms, minRefresh: c.MinRefresh, now: c.Now}
	if err := v.keys.refresh(ctx); err != nil {
		return nil, err
	}
	v.revs = newRevocations(c.Now, c.MaxLifetime)
	var err error
	if v.met, err = newMetrics(c.Registerer, c.Audience, v.revs); err != nil {
		return nil, fmt.Errorf("verify: metrics: %w", err)
	}
	ctx, v.cancel = context.WithCancel(context.WithoutCancel(ctx))
	if c.Revocation.FeedURL == "" {
		close(v.done)
		return v, nil
	}
	go func() {
		defer close(v.done)
		v.runFeed(ctx)
	}()
	return v, nil
}

// Close stops following the revocation feed.
func (v *Verifier) Close() {
	v.cancel()
	<-v.done
}

func (c *Config) setDefaults() error {
	switch {
	case c.Issuer == "":
		return errors.New("verify: config: Issuer is required")
	case c.Audience == "":
		return errors.New("verify: config: Audience is required")
	case c.JWKS == nil && c.JWKSURL == "":
		return errors.New("verify: config: JWKSURL or JWKS is required")
	}
	for _, a := range c.Algorithms {
		if !slices.Contains(DefaultAlgorithms, a) {
			return fmt.Errorf("verify: config: Algorithms: %q is not one of %v", a, DefaultAlgorithms)
		}
	}
	if c.Leeway < 0 || c.MinRefresh < 0 || c.MaxLifetime < 0 || c.Revocation.MaxStaleness < 0 {
		return errors.New("verify: config: durations must not be negative")
	}
	if len(c.Algorithms) == 0 {
		c.Algorithms = DefaultAlgorithms
	}
	c.Leeway = cmpOr(c.Leeway, DefaultLeeway)
	c.MinRefresh = cmpOr(c.MinRefresh, DefaultMinRefresh)
	c.MaxLifetime = cmpOr(c.MaxLifetime, DefaultLifetime)
	c.Revocation.MaxStaleness = cmpOr(c.Revocation.MaxStaleness, DefaultStaleness)
	c.Client = cmpOr(c.Client, http.DefaultClient)
	c.Log = cmpOr(c.Log, slog.Default())
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.JWKS == nil {
		c.JWKS = httpFetch(c.Client, c.JWKSURL)
	}
	if c.TrustDomain == "" {
		c.TrustDomain = trustDomainOf(c.Audience)
	}
	return nil
}

func cmpOr[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// Verify verifies token, presented over a TLS connection whose client
// certificate is peer, and returns its claims. Errors wrap ErrInvalidToken
// with a reason, or are ErrRevocationUnknown.
func (v *Verifier) Verify(ctx context.Context, tok string, peer *x509.Certificate) (*Claims, error) {
	c, err := v.verify(ctx, tok, peer)
	v.met.observe(err)
	if err != nil {
		jti := ""
		if c != nil {
			jti = c.ID
		}
		v.log.DebugContext(ctx, "verify: token refused", "jti", jti, "err", err)
		return nil, err
	}
	return c, nil
}

func (v *Verifier) verify(ctx context.Context, tok string, peer *x509.Certificate) (*Claims, error) {
	payload, err := v.verifySigned(ctx, tok, token.AccessToken)
	if err != nil {
		return nil, err
	}
	c, err := parseClaims(payload, tok)
	if err != nil {
		return nil, invalid(fmt.Errorf("%w: claims: %w", errMalformed, err))
	}
	if err := v.checkClaims(c); err != nil {
		return c, invalid(err)
	}
	if err := checkBinding(c.Confirmation, peer); err != nil {
		return c, invalid(err)
	}
	return c, v.checkRevoked(ctx, tok, c)
}

// verifySigned checks the compact JWS token's form, header and signature
// and returns its payload.
func (v *Verifier) verifySigned(ctx context.Context, tok string, typ token.Type) ([]byte, error) {
	if len(tok) > MaxTokenSize {
		return nil, invalid(errTooLarge)
	}
	if strings.Count(tok, ".") != 2 {
		return nil, invalid(errMalformed)
	}
	i, j := strings.IndexByte(tok, '.'), strings.LastIndexByte(tok, '.')
	seg := tok[:i]
	h, cached := v.headers.Get(seg)
	if !cached {
		var err error
		if h, err = parseHeader(seg); err != nil {
			return nil, invalid(err)
		}
	}
	if h.Typ != string(typ) {
		return nil, invalid(errType)
	}
	if !slices.Contains(v.cfg.Algorithms, h.Alg) {
		return nil, invalid(errAlgorithm)
	}
	key, err := v.keys.lookup(ctx, h.Kid, h.Alg)
	if err != nil {
		return nil, invalid(err)
	}
	payload, err := base64.RawURLEncoding.DecodeString(tok[i+1 : j])
	if err != nil {
		return nil, invalid(fmt.Errorf("%w: payload: %w", errMalformed, err))
	}
	sig, err := base64.RawURLEncoding.DecodeString(tok[j+1:])
	if err != nil {
		return nil, invalid(fmt.Errorf("%w: signature: %w", errMalformed, err))
	}
	if !key.verify(tok[:j], sig) {
		return nil, invalid(errSignature)
	}
	if !cached {
		v.headers.Put(seg, h)
	}
	return payload, nil
}

type header struct {
	Alg string `json:"alg"`
	Kid string `json:"kid"`
	Typ string `json:"typ"`
	// Refused, never ignored: keys and certificates come only from the
	// configured JWKS, and no extension is understood. encoding/json
	// matches names case-insensitively, which only refuses more.
	JWK    json.RawMessage `json:"jwk"`
	JKU    json.RawMessage `json:"jku"`
	X5U    json.RawMessage `json:"x5u"`
	X5C    json.RawMessage `json:"x5c"`
	X5T    json.RawMessage `json:"x5t"`
	X5T256 json.RawMessage `json:"x5t#S256"`
	Crit   json.RawMessage `json:"crit"`
	B64    json.RawMessage `json:"b64"`
}

func parseHeader(seg string) (header, error) {
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return header{}, errMalformed
	}
	var h header
	if err := json.Unmarshal(b, &h); err != nil {
		return header{}, errMalformed
	}
	for _, f := range [][]byte{h.JWK, h.JKU, h.X5U, h.X5C, h.X5T, h.X5T256, h.Crit, h.B64} {
		if f != nil {
			return header{}, errHeader
		}
	}
	return header{Alg: h.Alg, Kid: h.Kid, Typ: h.Typ}, nil
}

func (v *Verifier) checkClaims(c *Claims) error {
	now, leeway := v.cfg.Now(), v.cfg.Leeway
	switch {
	case c.Issuer != v.cfg.Issuer:
		return errIssuer
	case !c.HasAudience(v.cfg.Audience):
		return errAudience
	case c.Expiry.IsZero() || !now.Before(c.Expiry.Add(leeway)):
		return errExpired
	case !c.NotBefore.IsZero() && now.Add(leeway).Before(c.NotBefore):
		return errNotYetValid
	case !c.IssuedAt.IsZero() && now.Add(leeway).Before(c.IssuedAt):
		return errIssuedFuture
	case c.IssuedAt.IsZero() || c.Expiry.Sub(c.IssuedAt) > v.cfg.MaxLifetime:
		return errLifetime
	case c.ID == "":
		return errNoID
	}
	if c.CheckIdentities() != nil {
		return errIdentity
	}
	return nil
}

// checkBinding compares the token's cnf.x5t#S256 with the thumbprint of
// peer, in constant time.
func checkBinding(cnf string, peer *x509.Certificate) error {
	if cnf == "" || peer == nil {
		return errNotBound
	}
	if subtle.ConstantTimeCompare([]byte(cnf), []byte(token.Thumbprint(peer.Raw))) != 1 {
		return errNotBound
	}
	return nil
}
