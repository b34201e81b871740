package verify

import (
	"context"
	"crypto/x509"
	"errors"
	"net/http"
	"strings"
)

type contextKey struct{}

// NewContext returns ctx carrying c.
func NewContext(ctx context.Context, c *Claims) context.Context {
	return context.WithValue(ctx, contextKey{}, c)
}

// FromContext returns the claims Middleware verified for this request.
func FromContext(ctx context.Context) (*Claims, bool) {
	c, ok := ctx.Value(contextKey{}).(*Claims)
	return c, ok && c != nil
}

// Middleware verifies the request's bearer token against its TLS client
// certificate and calls next with the claims in the context (FromContext);
// a request that also carries a Txn-Token header must carry one valid
// transaction token (VerifyTxn), whose claims go in the context too
// (TxnFromContext), else it is answered 401 invalid_token (400 for a
// repeated header).
// A client certificate the revocation feed has revoked fails every
// request, also on a connection established before the revocation.
// It answers RFC 6750 errors: 401 without a token, or with an invalid one
// (error="invalid_token"), 400 invalid_request for a malformed
// Authorization header, and 503 when revocation cannot be checked.
func (v *Verifier) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, status, err := bearerToken(r)
		if err != nil {
			desc := ""
			if status == http.StatusBadRequest {
				desc = "expected exactly one Authorization: Bearer header"
			}
			challenge(w, status, err.Error(), desc, "")
			return
		}
		peer := peerCertificate(r)
		if peer == nil {
			challenge(w, http.StatusUnauthorized, "invalid_token", "a TLS client certificate is required", "")
			return
		}
		if v.peerRevoked(peer) { // on a connection set up before the revocation too
			v.met.observe(invalid(errCertRevoked))
			challenge(w, http.StatusUnauthorized, "invalid_token", errCertRevoked.Error(), "")
			return
		}
		c, err := v.Verify(r.Context(), token, peer)
		switch {
		case errors.Is(err, ErrRevocationUnknown):
			w.Header().Set("Retry-After", "5")
			http.Error(w, "revocation status unavailable", http.StatusServiceUnavailable)
			return
		case err != nil:
			challenge(w, http.StatusUnauthorized, "invalid_token", description(err), "")
			return
		}
		ctx := NewContext(r.Context(), c)
		txn, status, desc, err := v.txnHeader(r)
		switch {
		case errors.Is(err, ErrRevocationUnknown):
			w.Header().Set("Retry-After", "5")
			http.Error(w, "revocation status unavailable", http.StatusServiceUnavailable)
			return
		case errors.Is(err, errBadRequest):
			challenge(w, status, "invalid_request", desc, "")
			return
		case err != nil:
			challenge(w, status, "invalid_token", desc, "")
			return
		case txn != nil:
			ctx = NewTxnContext(ctx, txn)
		}
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// RequireScope calls next only for a request whose verified token (from
// Middleware) grants scope, and answers 403 insufficient_scope otherwise.
func RequireScope(scope string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, ok := FromContext(r.Context())
		if !ok {
			challenge(w, http.StatusUnauthorized, "", "", "")
			return
		}
		if !c.HasScope(scope) {
			challenge(w, http.StatusForbidden, "insufficient_scope", "the token lacks a required scope", scope)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// errNoToken and errBadRequest carry the RFC 6750 code as their text.
var (
	errNoToken    = errors.New("")
	errBadRequest = errors.New("invalid_request")
)

// bearerToken returns the token of the one Authorization: Bearer header.
func bearerToken(r *http.Request) (string, int, error) {
	vals := r.Header.Values("Authorization")
	switch {
	case len(vals) == 0:
		return "", http.StatusUnauthorized, errNoToken
	case len(vals) > 1:
		return "", http.StatusBadRequest, errBadRequest
	}
	scheme, token, ok := strings.Cut(vals[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || !isToken68(token) {
		return "", http.StatusBadRequest, errBadRequest
	}
	return token, 0, nil
}

// isToken68 reports whether s is an RFC 6750 b64token.
func isToken68(s string) bool {
	s = strings.TrimRight(s, "=")
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~+/", c) >= 0) {
			return false
		}
	}
	return true
}

// peerCertificate returns the TLS client certificate, nil without one.
func peerCertificate(r *http.Request) *x509.Certificate {
	switch {
	case r.TLS == nil:
		return nil
	case len(r.TLS.VerifiedChains) > 0 && len(r.TLS.VerifiedChains[0]) > 0:
		return r.TLS.VerifiedChains[0][0]
	case len(r.TLS.PeerCertificates) > 0:
		return r.TLS.PeerCertificates[0]
	}
	return nil
}

// challenge answers status with an RFC 6750 §3 WWW-Authenticate header.
func challenge(w http.ResponseWriter, status int, code, desc, scope string) {
	var b strings.Builder
	b.WriteString("Bearer")
	sep := " "
	for _, p := range [][2]string{{"error", code}, {"error_description", desc}, {"scope", scope}} {
		if p[1] != "" {
			b.WriteString(sep + p[0] + `="` + p[1] + `"`)
			sep = ", "
		}
	}
	w.Header().Set("WWW-Authenticate", b.String())
	w.Header().Set("Cache-Control", "no-store")
	http.Error(w, http.StatusText(status), status)
}
