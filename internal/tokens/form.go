package tokens

import (
	"net/url"
	"strings"

	"github.com/sigil-dev/sigil/api"
)

// Grant types of the token endpoint.
const (
	GrantClientCredentials = api.GrantClientCredentials
	GrantTokenExchange     = api.GrantTokenExchange
)

// tokenForm is a parsed token request.
type tokenForm struct {
	grant        string
	subject      string
	subjectType  string
	actor        string
	actorType    string
	scope        string
	requested    string
	audience     []string
	resource     []string
	wantOpaque   bool
	wantTxnToken bool
	// requestContext and requestDetails are a transaction token
	// request's (txn.go): the new transaction's rctx and tctx.
	requestContext, requestDetails map[string]any
}

// singletons are the parameters that may appear at most once (RFC 6749
// §3.2).
var singletons = []string{
	"grant_type", "client_id", "subject_token", "subject_token_type", "actor_token",
	"actor_token_type", "scope", "requested_token_type", "request_context", "request_details",
}

// parseTokenForm checks the shape of a token request from callerID.
// Verification of the tokens in it comes later.
func parseTokenForm(form url.Values, callerID string) (*tokenForm, error) {
	for _, p := range singletons {
		if len(form[p]) > 1 {
			return nil, invalidRequest("parameter %s is repeated", p)
		}
	}
	if id := form.Get("client_id"); id != "" && id != callerID {
		return nil, invalidClient("client_id is not the SPIFFE ID of the client certificate")
	}
	f := &tokenForm{
		grant: form.Get("grant_type"), subject: form.Get("subject_token"), subjectType: form.Get("subject_token_type"),
		actor: form.Get("actor_token"), actorType: form.Get("actor_token_type"), scope: form.Get("scope"),
		requested: form.Get("requested_token_type"), audience: form["audience"], resource: form["resource"],
	}
	if err := f.checkGrant(); err != nil {
		return nil, err
	}
	if err := f.checkRequested(); err != nil {
		return nil, err
	}
	return f, f.parseTxnForm(form)
}

func (f *tokenForm) checkGrant() error {
	switch f.grant {
	case "":
		return invalidRequest("grant_type is missing")
	case GrantClientCredentials:
		if f.subject != "" || f.subjectType != "" || f.actor != "" || f.actorType != "" {
			return invalidRequest("client_credentials takes no subject_token or actor_token: use grant_type %s", GrantTokenExchange)
		}
	case GrantTokenExchange:
		if f.actor == "" && f.actorType != "" {
			return invalidRequest("actor_token_type without actor_token")
		}
	default:
		return newError(UnsupportedGrantType, "grant_type must be %s or %s", GrantClientCredentials, GrantTokenExchange)
	}
	return nil
}

// askedScope reports whether the client sent a scope; without one, an
// exchange inherits the subject token's (less what policy denies).
func (f *tokenForm) askedScope() bool { return strings.TrimSpace(f.scope) != "" }

// checkRequested reads requested_token_type: absent or jwt for a JWT
// access token, access_token for a reference token, txn_token for a
// transaction token (token exchange only).
func (f *tokenForm) checkRequested() error {
	switch f.requested {
	case "", api.TokenTypeJWT:
	case api.TokenTypeAccessToken:
		f.wantOpaque = true
	case api.TokenTypeTxnToken:
		if f.grant != GrantTokenExchange {
			return invalidRequest("a transaction token is issued by token exchange only")
		}
		f.wantTxnToken = true
	default:
		return invalidRequest("requested_token_type must be %s, %s or %s", api.TokenTypeJWT, api.TokenTypeAccessToken, api.TokenTypeTxnToken)
	}
	return nil
}
