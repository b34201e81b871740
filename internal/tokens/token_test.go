package tokens_test

import (
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/api"
	"github.com/sigil-dev/sigil/audit"
	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/internal/tokens"
	"github.com/sigil-dev/sigil/internal/tokens/tokenstest"
	"github.com/sigil-dev/sigil/token"
)

// A client_credentials token is for the caller itself, bound to its
// certificate, carries its attestation reference, and is recorded and
// audited by jti.
func TestClientCredentials(t *testing.T) {
	t.Parallel()
	e := tokenstest.New(t)
	a, b := e.Workload(t, "a"), e.Workload(t, "b")
	r := mustToken(t, e.Service, a, cc(b.ID, "scope", "read write"))
	if r.TokenType != "Bearer" || r.IssuedTokenType != api.TokenTypeAccessToken || r.Scope != "read write" {
		t.Errorf("response = %+v", r)
	}
	if r.ExpiresIn <= 0 || r.ExpiresIn > int64(e.Config.DefaultTTL/time.Second) {
		t.Errorf("expires_in = %d, want at most DefaultTTL", r.ExpiresIn)
	}
	c := verify(t, e, r.AccessToken, b.ID)
	switch {
	case c.Subject != a.ID || c.ClientID != a.ID || c.Actor != nil:
		t.Errorf("sub %q client_id %q act %v, want the caller and no act", c.Subject, c.ClientID, c.Actor)
	case c.Confirmation != token.Thumbprint(a.Cert.Raw):
		t.Errorf("cnf = %q, want the caller's certificate thumbprint", c.Confirmation)
	case c.Evidence != e.EvidenceDigest() || c.Policy != e.Policy.Version():
		t.Errorf("attestation reference %q %q", c.Evidence, c.Policy)
	case c.Expiry.Sub(c.IssuedAt) != e.Config.DefaultTTL:
		t.Errorf("lifetime %v, want %v", c.Expiry.Sub(c.IssuedAt), e.Config.DefaultTTL)
	}
	rec, err := e.Store.Token(t.Context(), c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Kind != store.TokenJWT || rec.ParentJTI != "" || rec.CNF != c.Confirmation || rec.KID != e.Keys.Status()[0].KID {
		t.Errorf("record = %+v", rec)
	}
	kind, p := auditEntry(t, e.Store, "jti:"+c.ID)
	if kind != audit.TokenIssued || p.Sub != a.ID || p.CNF != c.Confirmation || !slices.Equal(p.Aud, []string{b.ID}) || p.Scope != "read write" {
		t.Errorf("audit entry %s %+v", kind, p)
	}
}

// A user's token from the IdP starts a delegation chain: each exchange
// narrows, nests the caller in act, binds to the caller and records its
// parent (the user token's record for the first); the chain stops at the
// depth limit.
func TestDelegationChain(t *testing.T) {
	t.Parallel()
	e := tokenstest.New(t)
	a, b, c, d := e.Workload(t, "a"), e.Workload(t, "b"), e.Workload(t, "c"), e.Workload(t, "d")
	user := e.IdP.Token(t, "alice", a.ID, "read write delete")
	ab := mustToken(t, e.Service, a, exchange(user, b.ID, "scope", "read write"))
	bc := mustToken(t, e.Service, b, exchange(ab.AccessToken, c.ID, "scope", "read"))
	abc, bcc := verify(t, e, ab.AccessToken, b.ID), verify(t, e, bc.AccessToken, c.ID)
	switch {
	case bcc.Subject != "alice" || bcc.SubjectIssuer != tokenstest.IdPIssuer:
		t.Errorf("sub %q from %q, want alice from the IdP", bcc.Subject, bcc.SubjectIssuer)
	case bcc.Actor.Depth() != 2 || bcc.Actor.Subject != b.ID || bcc.Actor.Actor.Subject != a.ID:
		t.Errorf("act = %+v, want b acting for a", bcc.Actor)
	case !slices.Equal(bcc.Scope, []string{"read"}) || bcc.Confirmation != token.Thumbprint(b.Cert.Raw):
		t.Errorf("scope %v cnf %q", bcc.Scope, bcc.Confirmation)
	case bcc.Expiry.After(abc.Expiry):
		t.Errorf("exchanged token outlives its subject: %v > %v", bcc.Expiry, abc.Expiry)
	}
	for jti, parent := range map[string]string{abc.ID: externalJTI(user), bcc.ID: abc.ID} {
		rec, err := e.Store.Token(t.Context(), jti)
		if err != nil || rec.ParentJTI != parent {
			t.Errorf("record of %s: parent %q (%v), want %q", jti, rec.ParentJTI, err, parent)
		}
		kind, p := auditEntry(t, e.Store, "jti:"+jti)
		if kind != audit.TokenExchanged || p.ParentJTI != parent || p.Sub != "alice" {
			t.Errorf("audit entry %s %+v", kind, p)
		}
	}
	_, p := auditEntry(t, e.Store, "jti:"+bcc.ID)
	if !slices.Equal(p.Act, []string{b.ID, a.ID}) {
		t.Errorf("audited act = %v, want the current actor first", p.Act)
	}
	_, err := e.Service.Token(t.Context(), c.Cert, exchange(bc.AccessToken, d.ID))
	if oe := oauthErr(t, err); oe.Code != tokens.InvalidRequest || !strings.Contains(oe.Description, "delegation chain") {
		t.Errorf("third actor: %v, want invalid_request for the delegation chain", err)
	}
}

// With a MaxActDepth above the policy's, the dev policy's forbid stops the
// chain: access_denied. The client is told a policy forbids it; which
// policy, the policy set version and how many policies were evaluated stay
// in the server log (the error's cause), out of error_description.
func TestActDepthForbiddenByPolicy(t *testing.T) {
	t.Parallel()
	e := tokenstest.New(t, func(c *tokens.Config) { c.MaxActDepth = 5 })
	w := []*tokenstest.Workload{e.Workload(t, "a"), e.Workload(t, "b"), e.Workload(t, "c"), e.Workload(t, "d"), e.Workload(t, "e")}
	tok := mustToken(t, e.Service, w[0], cc(w[1].ID)).AccessToken
	for i := 1; i < 3; i++ {
		tok = mustToken(t, e.Service, w[i], exchange(tok, w[i+1].ID)).AccessToken
	}
	_, err := e.Service.Token(t.Context(), w[3].Cert, exchange(tok, w[4].ID))
	oe := oauthErr(t, err)
	if want := fmt.Sprintf("policy denies a token for audience %q: a policy forbids it", w[4].ID); oe.Code != tokens.AccessDenied || oe.Description != want {
		t.Errorf("got %s: %q, want access_denied: %q", oe.Code, oe.Description, want)
	}
	if log := oe.Error(); !strings.Contains(log, `"max-act-depth"`) || !strings.Contains(log, e.Policy.Version()) {
		t.Errorf("error for the server log %q does not name the forbid and the policy set version", log)
	}
}

// Every request that must fail does, with the OAuth code the issue names,
// and issues nothing: never a fallback to another token.
func TestTokenRequestAttacks(t *testing.T) {
	t.Parallel()
	e := tokenstest.New(t, func(c *tokens.Config) { c.Policy = actorTokenPolicy(t) })
	a, b, c := e.Workload(t, "a"), e.Workload(t, "b"), e.Workload(t, "c")
	ab := mustToken(t, e.Service, a, cc(b.ID, "scope", "read write")).AccessToken
	revoked := mustToken(t, e.Service, a, cc(b.ID, "scope", "read")).AccessToken
	if err := e.Service.Revoke(t.Context(), a.Cert, revoked); err != nil {
		t.Fatal(err)
	}
	ownActor := mustToken(t, e.Service, b, cc(tokenstest.Issuer)).AccessToken
	otherActor := mustToken(t, e.Service, c, cc(tokenstest.Issuer)).AccessToken
	ex := func(kv ...string) url.Values { return exchange(ab, c.ID, kv...) }
	exchangeWithout := func(param string) url.Values {
		f := ex()
		f.Del(param)
		return f
	}
	tests := []struct {
		name   string
		caller *tokenstest.Workload // b if nil
		form   url.Values
		code   string
		detail string
	}{
		{"missing subject_token", nil, exchangeWithout("subject_token"), tokens.InvalidRequest, "subject_token is missing"},
		{"empty subject_token", nil, exchange("", c.ID), tokens.InvalidRequest, "subject_token is missing"},
		{"garbage subject_token", nil, exchange("garbage", c.ID), tokens.InvalidRequest, "malformed"},
		{"three garbage parts", nil, exchange("a.b.c", c.ID), tokens.InvalidRequest, "malformed"},
		{"missing subject_token_type", nil, exchangeWithout("subject_token_type"), tokens.InvalidRequest, "subject_token_type is missing"},
		{"unknown subject_token_type", nil, form("grant_type", tokens.GrantTokenExchange, "subject_token", ab, "subject_token_type", "urn:x", "audience", c.ID), tokens.InvalidRequest, "not supported"},
		{"subject token for another audience", c, exchange(ab, a.ID), tokens.InvalidRequest, "wrong audience"},
		{"revoked subject token", nil, exchange(revoked, c.ID), tokens.InvalidRequest, "revoked"},
		{"unknown reference token", nil, form("grant_type", tokens.GrantTokenExchange, "subject_token", strings.Repeat("A", 43), "subject_token_type", api.TokenTypeAccessToken, "audience", c.ID), tokens.InvalidRequest, "not a token this server issued"},
		{"user token for another workload", nil, exchange(e.IdP.Token(t, "alice", a.ID, "read"), c.ID), tokens.InvalidRequest, "wrong audience"},
		{"scope widening", nil, ex("scope", "read admin"), tokens.InvalidScope, `"admin"`},
		{"audience not permitted", nil, exchange(ab, "https://evil.example"), tokens.InvalidTarget, `policy denies a token for audience "https://evil.example": no policy permits it`},
		{"audience of another trust domain", nil, exchange(ab, "spiffe://other.test/workload/x"), tokens.InvalidTarget, `"spiffe://other.test/workload/x"`},
		{"resource not an absolute URI", nil, ex("resource", "relative/path"), tokens.InvalidTarget, "absolute URI"},
		{"no audience", nil, form("grant_type", tokens.GrantTokenExchange, "subject_token", ab, "subject_token_type", api.TokenTypeJWT), tokens.InvalidRequest, "audience or resource is required"},
		{"actor_token of another workload", nil, ex("actor_token", otherActor, "actor_token_type", api.TokenTypeJWT), tokens.InvalidRequest, "actor_token is not the caller's own"},
		{"actor_token_type without actor_token", nil, ex("actor_token_type", api.TokenTypeJWT), tokens.InvalidRequest, "actor_token_type"},
		{"repeated scope", nil, ex("scope", "read", "scope", "write"), tokens.InvalidRequest, "scope is repeated"},
		{"missing grant_type", nil, form("audience", c.ID), tokens.InvalidRequest, "grant_type is missing"},
		{"unsupported grant_type", nil, form("grant_type", "password", "audience", c.ID), tokens.UnsupportedGrantType, "client_credentials"},
		{"client_id of another client", nil, cc(c.ID, "client_id", a.ID), tokens.InvalidClient, "client_id"},
		{"client_credentials with a subject", nil, cc(c.ID, "subject_token", ab), tokens.InvalidRequest, "takes no subject_token"},
		{"transaction token without exchange", nil, cc(c.ID, "requested_token_type", api.TokenTypeTxnToken), tokens.InvalidRequest, "token exchange only"},
		{"unknown requested_token_type", nil, ex("requested_token_type", "urn:ietf:params:oauth:token-type:id_token"), tokens.InvalidRequest, "requested_token_type"},
		{"JWT for a reference-token audience", nil, cc(tokenstest.OpaqueAudience, "requested_token_type", api.TokenTypeJWT), tokens.InvalidTarget, "reference tokens only"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			caller := cmp.Or(tt.caller, b)
			_, err := e.Service.Token(t.Context(), caller.Cert, tt.form)
			oe := oauthErr(t, err)
			if oe.Code != tt.code || !strings.Contains(oe.Description, tt.detail) {
				t.Errorf("got %s: %s; want %s mentioning %q", oe.Code, oe.Description, tt.code, tt.detail)
			}
		})
	}
	t.Run("own actor_token", func(t *testing.T) {
		r := mustToken(t, e.Service, b, ex("actor_token", ownActor, "actor_token_type", api.TokenTypeJWT))
		if got := verify(t, e, r.AccessToken, c.ID); got.Actor.Subject != b.ID {
			t.Errorf("act = %+v", got.Actor)
		}
	})
	children, err := e.Store.TokenChildren(t.Context(), verify(t, e, ab, b.ID).ID)
	if err != nil || len(children) != 1 {
		t.Errorf("tokens exchanged from the subject: %d (%v), want only the one of the actor test", len(children), err)
	}
}

// The caller is its certificate: none, one revoked, one from another CA
// or one not on record is invalid_client.
func TestClientAuthentication(t *testing.T) {
	t.Parallel()
	e := tokenstest.New(t)
	a, b, gone := e.Workload(t, "a"), e.Workload(t, "b"), e.Workload(t, "gone")
	e.RevokeCertificate(t, gone)
	other, err := tokenstest.NewCA(newKey(t), newKey(t))
	if err != nil {
		t.Fatal(err)
	}
	foreign := tokenstest.Issue(t, other, a.ID, e.Evidence())
	unrecorded := tokenstest.Issue(t, e.CA, a.ID, e.Evidence())
	tests := []struct {
		name   string
		caller *tokenstest.Workload
		detail string
	}{
		{"no certificate", nil, "client certificate is required"},
		{"revoked certificate", gone, "revoked"},
		{"certificate of another CA", foreign, "not issued by this server"},
		{"certificate not on record", unrecorded, "not issued by this server"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cert := certOf(tt.caller)
			_, err := e.Service.Token(t.Context(), cert, cc(b.ID))
			if oe := oauthErr(t, err); oe.Code != tokens.InvalidClient || !strings.Contains(oe.Description, tt.detail) {
				t.Errorf("Token = %v, want invalid_client: %s", err, tt.detail)
			}
			_, err = e.Service.Introspect(t.Context(), cert, "x")
			if oe := oauthErr(t, err); oe.Code != tokens.InvalidClient {
				t.Errorf("Introspect = %v, want invalid_client", err)
			}
			if err := e.Service.Revoke(t.Context(), cert, "x"); oauthErr(t, err).Code != tokens.InvalidClient {
				t.Errorf("Revoke = %v, want invalid_client", err)
			}
		})
	}
}

// 64 concurrent identical exchanges all succeed, each with its own jti,
// each recorded under the subject token and audited.
func TestConcurrentExchanges(t *testing.T) {
	t.Parallel()
	e := tokenstest.New(t)
	a, b, c := e.Workload(t, "a"), e.Workload(t, "b"), e.Workload(t, "c")
	ab := mustToken(t, e.Service, a, cc(b.ID, "scope", "read"))
	const n = 64
	jtis := make([]string, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			r, err := e.Service.Token(context.Background(), b.Cert, exchange(ab.AccessToken, c.ID, "scope", "read"))
			if err != nil {
				errs <- err
				return
			}
			jtis[i] = r.JTI
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("exchange: %v", err)
	}
	slices.Sort(jtis)
	if len(slices.Compact(slices.Clone(jtis))) != n {
		t.Fatalf("jtis not distinct: %v", jtis)
	}
	children, err := e.Store.TokenChildren(t.Context(), verify(t, e, ab.AccessToken, b.ID).ID)
	if err != nil || len(children) != n {
		t.Fatalf("recorded children: %d (%v), want %d", len(children), err, n)
	}
	for _, jti := range jtis {
		if kind, p := auditEntry(t, e.Store, "jti:"+jti); kind != audit.TokenExchanged || p.JTI != jti {
			t.Errorf("audit entry of %s: %s %+v", jti, kind, p)
		}
	}
}

// Reference tokens: for an audience configured for them, or when asked
// for; only the handle's digest is stored; they resolve by introspection
// and serve as subject tokens.
func TestReferenceTokens(t *testing.T) {
	t.Parallel()
	e := tokenstest.New(t)
	a, b, legacy := e.Workload(t, "a"), e.Workload(t, "b"), e.Client(t, tokenstest.OpaqueAudience)
	for _, f := range []url.Values{cc(legacy.ID), cc(b.ID, "requested_token_type", api.TokenTypeAccessToken)} {
		r := mustToken(t, e.Service, a, f)
		if len(r.AccessToken) != 43 || strings.Contains(r.AccessToken, ".") || r.IssuedTokenType != api.TokenTypeAccessToken {
			t.Fatalf("got %q (%s), want a reference token", r.AccessToken, r.IssuedTokenType)
		}
		sum := sha256.Sum256([]byte(r.AccessToken))
		rec, err := e.Store.TokenByHandle(t.Context(), sum[:])
		if err != nil || rec.JTI != r.JTI || rec.Kind != store.TokenOpaque || rec.KID != "" {
			t.Fatalf("record by handle: %+v (%v)", rec, err)
		}
	}
	ref := mustToken(t, e.Service, a, cc(legacy.ID, "scope", "read"))
	in, err := e.Service.Introspect(t.Context(), legacy.Cert, ref.AccessToken)
	if err != nil || !in.Active || in.Sub != a.ID || in.Cnf.X5tS256 != token.Thumbprint(a.Cert.Raw) || in.Kind != store.TokenOpaque || in.Scope != "read" {
		t.Fatalf("introspection = %+v (%v)", in, err)
	}
	sub := form("grant_type", tokens.GrantTokenExchange, "subject_token", ref.AccessToken,
		"subject_token_type", api.TokenTypeAccessToken, "audience", b.ID, "requested_token_type", api.TokenTypeJWT)
	r := mustToken(t, e.Service, legacy, sub)
	if rec, err := e.Store.Token(t.Context(), r.JTI); err != nil || rec.ParentJTI != ref.JTI || r.IssuedTokenType != api.TokenTypeJWT {
		t.Errorf("exchanged from a reference token: %+v (%v), want parent %s", rec, err, ref.JTI)
	}
	assertNotStored(t, e, ref.AccessToken, r.AccessToken)
}

// assertNotStored checks that no token appears in the database files.
func assertNotStored(t *testing.T, e *tokenstest.Env, toks ...string) {
	t.Helper()
	files, _ := filepath.Glob(e.DBPath + "*")
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, tok := range toks {
			if strings.Contains(string(data), tok) {
				t.Errorf("%s holds a token", filepath.Base(f))
			}
		}
	}
}

// Fail closed: when the audit entry cannot be appended, no token is
// recorded or returned, and the error says to retry.
func TestTokenNotRecorded(t *testing.T) {
	t.Parallel()
	e := tokenstest.New(t)
	a, b, c := e.Workload(t, "a"), e.Workload(t, "b"), e.Workload(t, "c")
	ab := mustToken(t, e.Service, a, cc(b.ID))
	size, _ := e.Store.AuditSize(t.Context())
	cfg := e.Config
	cfg.Store = brokenLog{e.Store}
	svc := e.Start(t, cfg)
	for _, tt := range []struct {
		caller *tokenstest.Workload
		form   url.Values
	}{{a, cc(b.ID)}, {b, exchange(ab.AccessToken, c.ID)}} {
		r, err := svc.Token(t.Context(), tt.caller.Cert, tt.form)
		if !errors.Is(err, tokens.ErrNotRecorded) || r != nil {
			t.Errorf("Token = %v, %v; want nothing and ErrNotRecorded", r, err)
		}
	}
	if children, _ := e.Store.TokenChildren(t.Context(), ab.JTI); len(children) != 0 {
		t.Errorf("%d tokens recorded without their audit entries", len(children))
	}
	if n, _ := e.Store.AuditSize(t.Context()); n != size {
		t.Errorf("audit log grew from %d to %d", size, n)
	}
}
