package tokens_test

import (
	"encoding/base64"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/api"
	"github.com/sigil-dev/sigil/audit"
	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/internal/tokens"
	"github.com/sigil-dev/sigil/internal/tokens/tokenstest"
	"github.com/sigil-dev/sigil/signer"
	"github.com/sigil-dev/sigil/token"
)

// trustDomain is the audience of every transaction token of the tests.
const trustDomain = "spiffe://" + tokenstest.TrustDomain

// txnRequest asks for a transaction token on behalf of subject (of type
// subjectType), for the trust domain, plus kv.
func txnRequest(subject, subjectType string, kv ...string) url.Values {
	return form(append([]string{
		"grant_type", tokens.GrantTokenExchange, "subject_token", subject, "subject_token_type", subjectType,
		"audience", trustDomain, "requested_token_type", api.TokenTypeTxnToken,
	}, kv...)...)
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// A transaction token (draft-ietf-oauth-transaction-tokens-10) has typ
// txntoken+jwt and every required claim with its value: iat, aud the trust
// domain, exp minutes later, txn, sub the subject token's, scope no wider
// than it, req_wl the requester, and tctx and rctx from the request. It is
// recorded and audited as exchanged from its subject token, a replacement
// deeper in the call chain keeps the transaction, revoking the subject
// token revokes both, and neither token reaches the log or the database.
func TestTransactionTokens(t *testing.T) {
	t.Parallel()
	var logs lockedBuffer
	e := tokenstest.New(t, func(c *tokens.Config) {
		c.Log = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	a, b, c := e.Workload(t, "a"), e.Workload(t, "b"), e.Workload(t, "c")
	ab := mustToken(t, e.Service, a, cc(b.ID, "scope", "read write"))
	r := mustToken(t, e.Service, b, txnRequest(ab.AccessToken, api.TokenTypeJWT, "scope", "read",
		"request_context", b64(`{"req_ip":"192.0.2.7"}`), "request_details", b64(`{"action":"checkout"}`)))
	if r.TokenType != "N_A" || r.IssuedTokenType != api.TokenTypeTxnToken || r.ExpiresIn > int64(signer.MaxTxnLifetime/time.Second) {
		t.Fatalf("response %+v: want token_type N_A, a txn_token, minutes", r)
	}
	got, err := e.Config.Verifier.VerifyTxn(t.Context(), r.AccessToken, trustDomain)
	if err != nil {
		t.Fatalf("VerifyTxn: %v", err)
	}
	switch {
	case got.Type != token.TxnToken || got.IssuedAt.IsZero() || got.Txn == "":
		t.Errorf("typ %q, iat %v, txn %q", got.Type, got.IssuedAt, got.Txn)
	case !slices.Equal(got.Audience, []string{trustDomain}):
		t.Errorf("aud %v, want the trust domain", got.Audience)
	case got.Expiry.Sub(got.IssuedAt) > signer.MaxTxnLifetime:
		t.Errorf("lives %v", got.Expiry.Sub(got.IssuedAt))
	case got.Subject != a.ID || got.RequestingWorkload != b.ID || !slices.Equal(got.Scope, []string{"read"}):
		t.Errorf("sub %q, req_wl %q, scope %v", got.Subject, got.RequestingWorkload, got.Scope)
	case got.TxnContext["action"] != "checkout" || got.RequestContext["req_ip"] != "192.0.2.7":
		t.Errorf("tctx %v, rctx %v", got.TxnContext, got.RequestContext)
	}
	rec, err := e.Store.Token(t.Context(), got.ID)
	if err != nil || rec.Kind != store.TokenTxn || rec.ParentJTI != ab.JTI {
		t.Fatalf("record %+v (%v), want a txn token exchanged from %s", rec, err, ab.JTI)
	}
	if kind, p := auditEntry(t, e.Store, "jti:"+got.ID); kind != audit.TokenExchanged || p.ParentJTI != ab.JTI {
		t.Errorf("audited as %s with parent %q", kind, p.ParentJTI)
	}

	// Any workload of the trust domain, the token's audience, may
	// introspect it (a resource server whose revocation feed is down).
	in, err := e.Service.Introspect(t.Context(), c.Cert, r.AccessToken)
	if err != nil || !in.Active || in.Txn != got.Txn || in.ReqWL != b.ID || in.TokenType != "N_A" {
		t.Fatalf("introspection by a workload of the trust domain: %+v (%v)", in, err)
	}

	next := mustToken(t, e.Service, c, txnRequest(r.AccessToken, api.TokenTypeTxnToken))
	n, err := e.Config.Verifier.VerifyTxn(t.Context(), next.AccessToken, trustDomain)
	if err != nil || n.Txn != got.Txn || n.Subject != a.ID || n.RequestingWorkload != c.ID || n.TxnContext["action"] != "checkout" {
		t.Fatalf("replacement %+v (%v) does not keep transaction %s", n, err, got.Txn)
	}

	if err := e.Service.Revoke(t.Context(), a.Cert, ab.AccessToken); err != nil {
		t.Fatal(err)
	}
	for _, jti := range []string{got.ID, n.ID} {
		if rec, err := e.Store.Token(t.Context(), jti); err != nil || rec.RevokedAt == nil {
			t.Errorf("transaction token %s not revoked with its subject token: %+v (%v)", jti, rec, err)
		}
	}
	if in, err := e.Service.Introspect(t.Context(), c.Cert, r.AccessToken); err != nil || in.Active {
		t.Errorf("a revoked transaction token introspects %+v (%v)", in, err)
	}
	assertNotStored(t, e, r.AccessToken, next.AccessToken)
	for _, tok := range []string{r.AccessToken, next.AccessToken} {
		if sig := tok[strings.LastIndexByte(tok, '.')+1:]; strings.Contains(logs.String(), sig) {
			t.Error("the log holds a transaction token")
		}
	}
	if !strings.Contains(logs.String(), got.ID) {
		t.Error("the log does not name the transaction token by its jti")
	}
}

// Every transaction token request that must fail does, with the OAuth
// error the draft and RFC 8693 name, and issues nothing.
func TestTransactionTokenRefusals(t *testing.T) {
	t.Parallel()
	e := tokenstest.New(t)
	a, b, c := e.Workload(t, "a"), e.Workload(t, "b"), e.Workload(t, "c")
	ab := mustToken(t, e.Service, a, cc(b.ID, "scope", "read write")).AccessToken
	noScope := mustToken(t, e.Service, a, cc(b.ID)).AccessToken
	txn := mustToken(t, e.Service, b, txnRequest(ab, api.TokenTypeJWT, "scope", "read")).AccessToken
	tr := func(kv ...string) url.Values { return txnRequest(ab, api.TokenTypeJWT, kv...) }
	with := func(f url.Values, k string, v ...string) url.Values {
		f[k] = v
		return f
	}
	tests := []struct {
		name   string
		caller *tokenstest.Workload
		form   url.Values
		code   string
		detail string
	}{
		{"wider scope", b, tr("scope", "read admin"), tokens.InvalidScope, `"admin"`},
		{"subject token without scope", b, txnRequest(noScope, api.TokenTypeJWT), tokens.InvalidScope, "needs a scope"},
		{"audience a workload", b, with(tr(), "audience", c.ID), tokens.InvalidTarget, "audience is the trust domain"},
		{"audience another trust domain", b, with(tr(), "audience", "spiffe://other.test"), tokens.InvalidTarget, "audience is the trust domain"},
		{"audience the trust domain and a workload", b, with(tr(), "audience", trustDomain, c.ID), tokens.InvalidTarget, "audience is the trust domain"},
		{"resource", b, tr("resource", "https://api.example/"), tokens.InvalidTarget, "no resource"},
		{"access token sent as a transaction token", b, txnRequest(ab, api.TokenTypeTxnToken), tokens.InvalidRequest, "subject_token is invalid: missing or wrong typ"},
		{"transaction token sent as an access token", c, txnRequest(txn, api.TokenTypeJWT), tokens.InvalidRequest, "subject_token is invalid: missing or wrong typ"},
		{"transaction token exchanged for an access token", c, with(exchange(txn, b.ID), "subject_token_type", api.TokenTypeTxnToken), tokens.InvalidRequest, "exchanged only for another transaction token"},
		{"subject token of another workload", c, tr(), tokens.InvalidRequest, "wrong audience"},
		{"no subject token", b, cc(trustDomain, "requested_token_type", api.TokenTypeTxnToken), tokens.InvalidRequest, "token exchange only"},
		{"request_context not base64url", b, tr("request_context", "{not base64}"), tokens.InvalidRequest, "request_context is not base64url"},
		{"request_context not an object", b, tr("request_context", b64(`["a"]`)), tokens.InvalidRequest, "request_context is not a JSON object"},
		{"request_details member twice", b, tr("request_details", b64(`{"a":1,"a":2}`)), tokens.InvalidRequest, `member "a" twice`},
		{"request_details trailing data", b, tr("request_details", b64(`{"a":1}{}`)), tokens.InvalidRequest, "data after the object"},
		{"request_context too long", b, tr("request_context", strings.Repeat("A", 2049)), tokens.InvalidRequest, "1 to 2048"},
		{"request_context repeated", b, tr("request_context", b64(`{}`), "request_context", b64(`{}`)), tokens.InvalidRequest, "repeated"},
		{"request_context for an access token", b, exchange(ab, c.ID, "request_context", b64(`{}`)), tokens.InvalidRequest, "transaction token request"},
		{"replacement changing the context", c, txnRequest(txn, api.TokenTypeTxnToken, "request_details", b64(`{"action":"refund"}`)), tokens.InvalidRequest, "keeps its transaction's context"},
		{"replacement widening scope", c, txnRequest(txn, api.TokenTypeTxnToken, "scope", "read write"), tokens.InvalidScope, `"write"`},
	}
	before, _ := e.Store.AuditSize(t.Context())
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.Service.Token(t.Context(), tt.caller.Cert, tt.form)
			oe := oauthErr(t, err)
			if oe.Code != tt.code || !strings.Contains(oe.Description, tt.detail) {
				t.Errorf("got %s: %s; want %s mentioning %q", oe.Code, oe.Description, tt.code, tt.detail)
			}
		})
	}
	if after, _ := e.Store.AuditSize(t.Context()); after != before {
		t.Errorf("refused requests appended %d audit entries", after-before)
	}
}
