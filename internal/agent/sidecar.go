package agent

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/sigil-dev/sigil/client"
	"github.com/sigil-dev/sigil/internal/jsonhttp"
	"github.com/sigil-dev/sigil/token"
	"github.com/sigil-dev/sigil/verify"
)

// Request headers of the sidecar contract (README "sigil agent"). The
// ingress removes every header named X-Sigil-* and X-Forwarded-Client-Cert
// from requests that arrive from outside, then sets these from what it
// verified; the service can trust them because only the agent reaches it.
const (
	// HeaderPrefix starts every header of the contract.
	HeaderPrefix = "X-Sigil-"
	// HeaderCaller is the SPIFFE ID of the caller's verified client
	// certificate.
	HeaderCaller = "X-Sigil-Caller"
	// HeaderCallerCert is the caller certificate's x5t#S256 (base64url
	// SHA-256 of its DER): the token's cnf, checked.
	HeaderCallerCert = "X-Sigil-Caller-Cert-Hash"
	// HeaderSubject is the token's sub: a workload's SPIFFE ID or an IdP's
	// user; HeaderSubjectIssuer names that IdP for a user.
	HeaderSubject       = "X-Sigil-Subject"
	HeaderSubjectIssuer = "X-Sigil-Subject-Issuer"
	// HeaderAct is the delegation chain, the calling workload first,
	// comma-separated; absent when the subject itself called.
	HeaderAct = "X-Sigil-Act"
	// HeaderScope is the token's scope, space-separated.
	HeaderScope = "X-Sigil-Scope"
	// HeaderTokenID is the token's jti.
	HeaderTokenID = "X-Sigil-Token-Id"
	// HeaderClaims is every claim of the token as JSON, base64url without
	// padding.
	HeaderClaims = "X-Sigil-Claims"
	// HeaderContext is a handle of the verified incoming token: forward it
	// on a call to the egress sidecar made on the caller's behalf, and the
	// agent exchanges that token (RFC 8693) for the outgoing one.
	HeaderContext = "X-Sigil-Context"
	// HeaderSubjectToken, on a call to the egress sidecar, is a subject
	// token the service holds itself (a user's IdP token at the edge): the
	// agent exchanges it for the outgoing token.
	HeaderSubjectToken = "X-Sigil-Subject-Token"
	// HeaderTxn is the txn claim of the transaction token that came with
	// the request (the Txn-Token header, verified), and HeaderTxnClaims
	// all its claims, JSON, base64url without padding. The token itself
	// follows X-Sigil-Context to the egress.
	HeaderTxn       = "X-Sigil-Txn"
	HeaderTxnClaims = "X-Sigil-Txn-Claims"
	// HeaderXFCC is Envoy's x-forwarded-client-cert, with Hash (hex
	// SHA-256 of the caller certificate), URI (its SPIFFE ID) and By (this
	// workload's).
	HeaderXFCC = "X-Forwarded-Client-Cert"
)

// Sidecar proxy bounds.
const (
	upstreamTimeout   = 60 * time.Second
	readHeaderTimeout = 10 * time.Second
	shutdownGrace     = 5 * time.Second
)

// stripIdentity removes the contract's headers and Txn-Token.
func stripIdentity(h http.Header) {
	for k := range h {
		if strings.HasPrefix(http.CanonicalHeaderKey(k), HeaderPrefix) {
			delete(h, k)
		}
	}
	h.Del(HeaderXFCC)
	h.Del(verify.TxnTokenHeader)
}

// Ingress is the ingress sidecar's handler: verified requests go to
// Upstream, a plain-HTTP service on this host.
type Ingress struct {
	Upstream *url.URL
	// Verifier checks each request's token against the caller's
	// certificate (verify.Middleware: issuer, audience = this workload,
	// cnf, revocation). Nil for an edge service whose callers are users
	// with another issuer's tokens: then Authorization passes through
	// unverified, and no identity header is set.
	Verifier *verify.Verifier
	// Scope, if set, is required of every token (403 insufficient_scope).
	Scope string
	Self  spiffeid.ID
	Log   *slog.Logger

	contexts *contexts
}

// Handler is the ingress.
func (in *Ingress) Handler() http.Handler {
	rp := &httputil.ReverseProxy{
		Rewrite:      in.rewrite,
		Transport:    &http.Transport{ResponseHeaderTimeout: upstreamTimeout, MaxIdleConnsPerHost: 64, IdleConnTimeout: 90 * time.Second},
		ErrorHandler: proxyError(in.Log, "upstream"),
	}
	if in.Verifier == nil {
		return rp
	}
	var h http.Handler = rp
	if in.Scope != "" {
		h = verify.RequireScope(in.Scope, h)
	}
	return in.Verifier.Middleware(h)
}

func (in *Ingress) rewrite(pr *httputil.ProxyRequest) {
	pr.SetURL(in.Upstream)
	pr.SetXForwarded()
	stripIdentity(pr.Out.Header)
	c, ok := verify.FromContext(pr.In.Context())
	if !ok {
		return
	}
	pr.Out.Header.Del("Authorization") // the service gets the handle, not the token
	peer := pr.In.TLS.PeerCertificates[0]
	h := pr.Out.Header
	caller := ""
	if len(peer.URIs) > 0 {
		caller = peer.URIs[0].String()
	}
	sum := sha256.Sum256(peer.Raw)
	setHeader(h, HeaderCaller, caller)
	setHeader(h, HeaderCallerCert, token.Thumbprint(peer.Raw))
	setHeader(h, HeaderXFCC, fmt.Sprintf("By=%s;Hash=%s;URI=%s", in.Self, hex.EncodeToString(sum[:]), caller))
	setHeader(h, HeaderSubject, c.Subject)
	setHeader(h, HeaderSubjectIssuer, c.SubjectIssuer)
	setHeader(h, HeaderAct, strings.Join(c.ActChain(), ","))
	setHeader(h, HeaderScope, strings.Join(c.Scope, " "))
	setHeader(h, HeaderTokenID, c.ID)
	setHeader(h, HeaderClaims, claimsHeader(c))
	txn := ""
	if tc, ok := verify.TxnFromContext(pr.In.Context()); ok {
		txn = tc.Token()
		setHeader(h, HeaderTxn, tc.Txn)
		setHeader(h, HeaderTxnClaims, claimsHeader(tc))
	}
	setHeader(h, HeaderContext, in.contexts.put(c.Token(), txn, c.Expiry))
}

// claimsHeader is c's claims, JSON, base64url without padding.
func claimsHeader(c *verify.Claims) string {
	raw, err := json.Marshal(c.Raw())
	if err != nil {
		return ""
	}
	return base64.RawURLEncoding.EncodeToString(raw)
}

// setHeader sets a non-empty value made only of visible ASCII and spaces;
// any other (an IdP's subject with control characters) is left out, and
// is in HeaderClaims.
func setHeader(h http.Header, name, v string) {
	if v == "" {
		return
	}
	for _, b := range []byte(v) {
		if b < 0x20 || b > 0x7e {
			return
		}
	}
	h.Set(name, v)
}

// Target is a service the egress sidecar calls: by Name, at URL (https),
// proving ID, with a token for ID with Scope.
type Target struct {
	Name  string
	URL   *url.URL
	ID    spiffeid.ID
	Scope []string
}

// ParseTarget reads "NAME=URL SPIFFE_ID [SCOPE…]".
func ParseTarget(s string) (Target, error) {
	name, rest, ok := strings.Cut(s, "=")
	f := strings.Fields(rest)
	if !ok || name == "" || strings.ContainsAny(name, "/ ") || len(f) < 2 {
		return Target{}, fmt.Errorf("agent: target %q: want NAME=URL SPIFFE_ID [SCOPE…]", s)
	}
	u, err := url.Parse(f[0])
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return Target{}, fmt.Errorf("agent: target %s: URL %q: want https://HOST:PORT", name, f[0])
	}
	id, err := spiffeid.FromString(f[1])
	if err != nil {
		return Target{}, fmt.Errorf("agent: target %s: SPIFFE ID %q: %w", name, f[1], err)
	}
	return Target{Name: name, URL: u, ID: id, Scope: f[2:]}, nil
}

// Egress is the egress sidecar's handler: a request to /NAME/PATH goes to
// target NAME's URL + /PATH over mTLS with the TPM key, with a token for
// the target bound to the certificate; exchanged for the caller's token
// when the request carries HeaderContext (or for HeaderSubjectToken).
type Egress struct {
	Client  *client.Client
	Targets []Target
	Log     *slog.Logger

	contexts *contexts
}

// Handler is the egress.
func (e *Egress) Handler() http.Handler {
	proxies := make(map[string]http.Handler, len(e.Targets))
	for _, t := range e.Targets {
		proxies[t.Name] = &httputil.ReverseProxy{
			Rewrite: func(pr *httputil.ProxyRequest) {
				pr.SetURL(t.URL)
				stripIdentity(pr.Out.Header)
				pr.Out.Header.Del("Authorization")
			},
			Transport:    e.Client.Transport(t.ID, t.Scope...),
			ErrorHandler: proxyError(e.Log, "target "+t.Name),
		}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name, rest, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
		p, ok := proxies[name]
		if !ok {
			jsonhttp.Fail(w, http.StatusNotFound, "invalid_request", fmt.Sprintf("no target %q: call /TARGET/PATH with a configured target", name))
			return
		}
		ctx, ok := e.subject(w, r)
		if !ok {
			return
		}
		out := r.WithContext(ctx)
		out.URL = new(url.URL)
		*out.URL = *r.URL
		out.URL.Path, out.URL.RawPath = "/"+rest, ""
		p.ServeHTTP(w, out)
	})
}

// subject returns the request's context with the subject token the call is
// made for, if it names one, and the transaction token that goes along:
// the one that came with the context's incoming request, or one the
// service sends in Txn-Token itself. client.Transport sends a transaction
// token only to a target of the workload's trust domain.
func (e *Egress) subject(w http.ResponseWriter, r *http.Request) (context.Context, bool) {
	ctx := r.Context()
	if txn := r.Header.Get(verify.TxnTokenHeader); txn != "" {
		if len(txn) > verify.MaxTokenSize {
			jsonhttp.Fail(w, http.StatusBadRequest, "invalid_request", verify.TxnTokenHeader+" is too long")
			return nil, false
		}
		ctx = client.WithTxnToken(ctx, txn)
	}
	if h := r.Header.Get(HeaderContext); h != "" {
		in, ok := e.contexts.get(h)
		if !ok {
			jsonhttp.Fail(w, http.StatusUnauthorized, "invalid_request", HeaderContext+" is unknown or its token has expired")
			return nil, false
		}
		if in.txn != "" {
			ctx = client.WithTxnToken(ctx, in.txn)
		}
		return client.WithSubjectToken(ctx, in.token), true
	}
	if tok := r.Header.Get(HeaderSubjectToken); tok != "" {
		if len(tok) > verify.MaxTokenSize {
			jsonhttp.Fail(w, http.StatusBadRequest, "invalid_request", HeaderSubjectToken+" is too long")
			return nil, false
		}
		return client.WithSubjectToken(ctx, tok), true
	}
	return ctx, true
}

// proxyError answers a failed proxied call: 403 when the policy or the
// token rules refused the token, 503 when sigild is unavailable, 502
// otherwise.
func proxyError(log *slog.Logger, what string) func(http.ResponseWriter, *http.Request, error) {
	return func(w http.ResponseWriter, r *http.Request, err error) {
		status, code := errorStatus(err)
		if errors.Is(err, context.Canceled) {
			return // the caller left
		}
		log.Warn("sidecar: call to "+what+" failed", "path", r.URL.Path, "err", err, "status", status)
		if status == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", "5")
		}
		jsonhttp.Fail(w, status, code, err.Error())
	}
}

// checkLoopback refuses a listen address that is not on loopback: the
// egress takes plain HTTP and makes authenticated calls for whoever
// connects.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("agent: egress address %q: %w", addr, err)
	}
	if !isLoopbackHost(host) {
		return fmt.Errorf("agent: egress address %q: must be on loopback (127.0.0.1, ::1)", addr)
	}
	return nil
}

func isLoopbackHost(host string) bool {
	ip := net.ParseIP(host)
	return host == "localhost" || ip != nil && ip.IsLoopback()
}
