package signer

import (
	"slices"
	"time"

	"github.com/sigil-dev/sigil/token"
)

// MaxTxnLifetime caps a transaction token's lifetime: it lives for one
// transaction's call chain, minutes at most (the draft's guidance).
const MaxTxnLifetime = 5 * time.Minute

// Transaction applies the rules of a transaction token request
// (draft-ietf-oauth-transaction-tokens-10: an RFC 8693 exchange with
// requested_token_type txn_token) and returns the claims of the new
// transaction token, for Minter.TxnToken. trustDomain is its audience: the
// trust domain within which it is valid (sigil names it by its SPIFFE ID,
// spiffe://TRUST_DOMAIN). Like Exchange it is pure; a broken rule is a
// *RuleError.
//
//   - The subject token is required: an access token issued to the caller
//     (the call that starts the transaction), or a transaction token of
//     this trust domain (a replacement, deeper in the call chain), which
//     keeps its txn, tctx and rctx. Either must not have expired.
//   - Audience: exactly trustDomain and no resource, else ErrTarget.
//   - Scope: narrowed from the subject token's as in Exchange (ErrScope
//     for a wider one); a transaction token must have one (ErrScope).
//   - Lifetime: the shortest of the request, MaxTxnLifetime, r.MaxLifetime
//     and the subject token's remaining lifetime.
//   - sub is the subject token's, req_wl the caller, act nests the caller
//     over the subject's act (at most r.MaxActDepth actors, ErrGrant), and
//     cnf is the caller's certificate, as in Exchange.
//   - A new transaction gets req.TxnContext and req.RequestContext as
//     tctx and rctx; a replacement may not change them (ErrRequest).
func (r Rules) Transaction(now time.Time, req Request, trustDomain string) (*token.Claims, error) {
	if req.Subject == nil {
		return nil, broken(ErrRequest, "subject_token is required")
	}
	if len(req.Resource) > 0 || !slices.Equal(req.Audience, []string{trustDomain}) {
		return nil, broken(ErrTarget, "a transaction token's audience is the trust domain: send audience=%s and no resource", trustDomain)
	}
	replacement := req.Subject.Type == token.TxnToken
	if replacement {
		if req.TxnContext != nil || req.RequestContext != nil {
			return nil, broken(ErrRequest, "a replacement transaction token keeps its transaction's context: send no request_context or request_details")
		}
		// The caller is a workload of the trust domain (its certificate),
		// which is the transaction token's audience.
		req.Subject = withAudience(req.Subject, req.Caller.ID)
	}
	if req.Lifetime == 0 || req.Lifetime > MaxTxnLifetime {
		req.Lifetime = MaxTxnLifetime
	}
	c, err := r.Exchange(now, req)
	if err != nil {
		return nil, err
	}
	if len(c.Scope) == 0 {
		return nil, broken(ErrScope, "a transaction token needs a scope, and the subject token grants none")
	}
	c.Type, c.RequestingWorkload = token.TxnToken, req.Caller.ID
	if !replacement {
		c.Txn, c.TxnContext, c.RequestContext = "", req.TxnContext, req.RequestContext
	}
	return c, nil
}

// withAudience returns a copy of c whose audience also names aud.
func withAudience(c *token.Claims, aud string) *token.Claims {
	cp := *c
	cp.Audience = append(slices.Clone(c.Audience), aud)
	return &cp
}
