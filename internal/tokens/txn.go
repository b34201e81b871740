package tokens

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/sigil-dev/sigil/api"
)

// Transaction token requests (draft-ietf-oauth-transaction-tokens-10): a
// token exchange with requested_token_type txn_token and audience the
// trust domain's SPIFFE ID (spiffe://TRUST_DOMAIN), whose subject token is
// an access token issued to the caller, or a transaction token of the
// trust domain to replace deeper in the call chain. signer.Rules.Transaction
// decides the claims (iat, aud, exp, txn, sub, scope, req_wl, tctx, rctx);
// policy is asked about the trust domain as the audience; the token is
// recorded and audited like any other (kind txn), and revoking its
// subject token revokes it.
//
// The optional request_context and request_details parameters are
// base64url-encoded JSON objects of at most maxContextParam characters:
// they become the new transaction's rctx and tctx. A transaction token is
// exchanged only for a replacement transaction token, never for an
// access token: it carries a transaction's context, and is no credential
// to reach a service with.

// maxContextParam bounds request_context and request_details, encoded.
const maxContextParam = 2048

// txnParams are the transaction token request's own parameters.
var txnParams = []string{"request_context", "request_details"}

// parseTxnForm reads the parameters of a transaction token request into
// f, and refuses them in any other request; a transaction token as the
// subject of anything but a transaction token request is refused too.
func (f *tokenForm) parseTxnForm(form url.Values) error {
	if !f.wantTxnToken {
		for _, p := range txnParams {
			if form.Has(p) {
				return invalidRequest("%s is a parameter of a transaction token request (requested_token_type %s) only", p, api.TokenTypeTxnToken)
			}
		}
		if f.subjectType == api.TokenTypeTxnToken {
			return invalidRequest("a transaction token is exchanged only for another transaction token: requested_token_type must be %s", api.TokenTypeTxnToken)
		}
		return nil
	}
	var err error
	if f.requestContext, err = contextParam(form, "request_context"); err != nil {
		return err
	}
	f.requestDetails, err = contextParam(form, "request_details")
	return err
}

// contextParam decodes the base64url JSON object of parameter name; nil
// when it is absent.
func contextParam(form url.Values, name string) (map[string]any, error) {
	raw := form.Get(name)
	if !form.Has(name) {
		return nil, nil
	}
	if raw == "" || len(raw) > maxContextParam {
		return nil, invalidRequest("%s must be 1 to %d characters of base64url", name, maxContextParam)
	}
	data, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(raw, "="))
	if err != nil {
		return nil, invalidRequest("%s is not base64url", name)
	}
	obj, err := jsonObject(data)
	if err != nil {
		return nil, invalidRequest("%s is not a JSON object: %v", name, err)
	}
	return obj, nil
}

// jsonObject decodes a JSON object with unique member names and nothing
// after it.
func jsonObject(data []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, errors.New("not an object")
	}
	obj := map[string]any{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, err
		}
		name, _ := t.(string)
		if _, dup := obj[name]; dup {
			return nil, fmt.Errorf("member %q twice", name)
		}
		var v any
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		obj[name] = v
	}
	if _, err := dec.Token(); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err == nil {
		return nil, errors.New("data after the object")
	}
	return obj, nil
}
