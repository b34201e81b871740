package client

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/sigil-dev/sigil/api"
	"github.com/sigil-dev/sigil/verify"
)

// TxnRequest asks for a transaction token
// (draft-ietf-oauth-transaction-tokens-10) for the workload's trust
// domain, on behalf of SubjectToken: an access token issued to this
// workload (the request that starts the transaction), or a transaction
// token to replace.
type TxnRequest struct {
	SubjectToken     string
	SubjectTokenType string // default access_token; api.TokenTypeTxnToken for a replacement
	// Scope narrows the subject token's; empty keeps all of it.
	Scope []string
	// RequestContext and RequestDetails become the transaction's rctx and
	// tctx (a new transaction only): JSON objects of at most about 1.5
	// KiB each.
	RequestContext, RequestDetails map[string]any
}

// TxnToken gets a transaction token from sigild, for the workload's trust
// domain (audience spiffe://TRUST_DOMAIN). Send it in the Txn-Token
// header: Transport does for requests under WithTxnToken.
func (c *Client) TxnToken(ctx context.Context, r TxnRequest) (*TokenResponse, error) {
	if r.SubjectToken == "" {
		return nil, errors.New("client: a transaction token needs a subject token")
	}
	req := TokenRequest{
		Audience: []string{c.ID().TrustDomain().IDString()}, Scope: r.Scope,
		SubjectToken: r.SubjectToken, SubjectTokenType: r.SubjectTokenType, RequestedTokenType: api.TokenTypeTxnToken,
	}
	var err error
	if req.RequestContext, err = contextParam(r.RequestContext); err != nil {
		return nil, fmt.Errorf("client: request context: %w", err)
	}
	if req.RequestDetails, err = contextParam(r.RequestDetails); err != nil {
		return nil, fmt.Errorf("client: request details: %w", err)
	}
	return c.w.Token(ctx, req)
}

// contextParam encodes a transaction context object as the token
// endpoint takes it: base64url JSON; "" for none.
func contextParam(obj map[string]any) (string, error) {
	if obj == nil {
		return "", nil
	}
	b, err := json.Marshal(obj)
	if err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

type txnKey struct{}

// WithTxnToken returns ctx under which Transport sends tok, a transaction
// token, in the Txn-Token header of every request.
func WithTxnToken(ctx context.Context, tok string) context.Context {
	return context.WithValue(ctx, txnKey{}, tok)
}

// txnToken is the transaction token a request carries on: the one given
// with WithTxnToken, else the one verify's Middleware verified on the
// incoming request, so that it follows the call chain.
func txnToken(ctx context.Context) string {
	if t, ok := ctx.Value(txnKey{}).(string); ok {
		return t
	}
	if c, ok := verify.TxnFromContext(ctx); ok {
		return c.Token()
	}
	return ""
}

// withTxnHeader sets the Txn-Token header of out from ctx.
func withTxnHeader(ctx context.Context, out *http.Request) {
	if txn := txnToken(ctx); txn != "" {
		out.Header.Set(verify.TxnTokenHeader, txn)
	}
}
