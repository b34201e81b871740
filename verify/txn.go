package verify

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/sigil-dev/sigil/token"
)

// Transaction tokens (draft-ietf-oauth-transaction-tokens-10) travel in
// the Txn-Token header beside the caller's own access token: they carry
// the transaction's subject, scope and context down the call chain
// within the trust domain, and are no credential of their own. client's
// Transport forwards the one a request came with.
const (
	TxnTokenHeader = "Txn-Token"
	// MaxTxnLifetime is the longest transaction token accepted (exp-iat).
	MaxTxnLifetime = 5 * time.Minute
)

// errMissingClaim is a transaction token without one of the claims the
// draft requires; the claim's name follows.
var errMissingClaim = errors.New("transaction token lacks a required claim")

// VerifyTxn verifies a transaction token: typ txntoken+jwt (an access
// token is refused, as VerifyTxn's tokens are refused by Verify), an
// allowed algorithm and a key of the JWKS, iss, aud the trust domain
// (Config.TrustDomain), exp, nbf and iat with the leeway, a lifetime of at
// most MaxTxnLifetime, the required txn, sub, scope, req_wl and jti, and
// not revoked. It is not checked against the peer certificate: it was
// issued to the workload that started the transaction, and reaches this
// one through others. Errors are as Verify's.
func (v *Verifier) VerifyTxn(ctx context.Context, tok string) (*Claims, error) {
	c, err := v.verifyTxn(ctx, tok)
	v.met.observe(err)
	if err != nil {
		jti := ""
		if c != nil {
			jti = c.ID
		}
		v.log.DebugContext(ctx, "verify: transaction token refused", "jti", jti, "err", err)
		return nil, err
	}
	return c, nil
}

func (v *Verifier) verifyTxn(ctx context.Context, tok string) (*Claims, error) {
	payload, err := v.verifySigned(ctx, tok, token.TxnToken)
	if err != nil {
		return nil, err
	}
	c, err := parseClaims(payload, tok)
	if err != nil {
		return nil, invalid(fmt.Errorf("%w: claims: %w", errMalformed, err))
	}
	c.Type = token.TxnToken
	if err := v.checkTxnClaims(c); err != nil {
		return c, invalid(err)
	}
	return c, v.checkRevoked(ctx, tok, c)
}

// checkTxnClaims checks what every transaction token must say.
func (v *Verifier) checkTxnClaims(c *Claims) error {
	now, leeway := v.cfg.Now(), v.cfg.Leeway
	for _, claim := range []struct {
		name    string
		missing bool
	}{
		{"iat", c.IssuedAt.IsZero()}, {"aud", len(c.Audience) == 0}, {"exp", c.Expiry.IsZero()}, {"txn", c.Txn == ""},
		{"sub", c.Subject == ""}, {"scope", len(c.Scope) == 0}, {"req_wl", c.RequestingWorkload == ""}, {"jti", c.ID == ""},
	} {
		if claim.missing {
			return fmt.Errorf("%w: %s", errMissingClaim, claim.name)
		}
	}
	switch {
	case c.Issuer != v.cfg.Issuer:
		return errIssuer
	case v.cfg.TrustDomain == "" || !c.HasAudience(v.cfg.TrustDomain):
		return errAudience
	case !now.Before(c.Expiry.Add(leeway)):
		return errExpired
	case !c.NotBefore.IsZero() && now.Add(leeway).Before(c.NotBefore):
		return errNotYetValid
	case now.Add(leeway).Before(c.IssuedAt):
		return errIssuedFuture
	case c.Expiry.Sub(c.IssuedAt) > MaxTxnLifetime:
		return errLifetime
	}
	if c.CheckIdentities() != nil {
		return errIdentity
	}
	return nil
}

// trustDomainOf is the SPIFFE ID of the trust domain of audience, a
// SPIFFE ID; "" if it is none.
func trustDomainOf(audience string) string {
	id, err := spiffeid.FromString(audience)
	if err != nil {
		return ""
	}
	return id.TrustDomain().IDString()
}

type txnContextKey struct{}

// NewTxnContext returns ctx carrying the verified transaction token c.
func NewTxnContext(ctx context.Context, c *Claims) context.Context {
	return context.WithValue(ctx, txnContextKey{}, c)
}

// TxnFromContext returns the transaction token Middleware verified for
// this request, if it came with one.
func TxnFromContext(ctx context.Context) (*Claims, bool) {
	c, ok := ctx.Value(txnContextKey{}).(*Claims)
	return c, ok && c != nil
}

// txnHeader verifies the request's Txn-Token header, if any: nil claims
// without one; a repeated header is invalid_request.
func (v *Verifier) txnHeader(r *http.Request) (*Claims, int, string, error) {
	vals := r.Header.Values(TxnTokenHeader)
	switch {
	case len(vals) == 0:
		return nil, 0, "", nil
	case len(vals) > 1 || !isToken68(vals[0]):
		return nil, http.StatusBadRequest, "expected at most one Txn-Token header, a JWT", errBadRequest
	}
	c, err := v.VerifyTxn(r.Context(), vals[0])
	if err != nil {
		return nil, http.StatusUnauthorized, "Txn-Token: " + description(err), err
	}
	return c, 0, "", nil
}

// RequireTxn calls next only for a request that came with a transaction
// token Middleware verified, and answers 401 otherwise.
func RequireTxn(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := TxnFromContext(r.Context()); !ok {
			challenge(w, http.StatusUnauthorized, "invalid_request", "a Txn-Token header is required", "")
			return
		}
		next.ServeHTTP(w, r)
	})
}
