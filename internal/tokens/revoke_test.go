package tokens_test

import (
	"errors"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/audit"
	"github.com/sigil-dev/sigil/internal/tokens"
	"github.com/sigil-dev/sigil/internal/tokens/tokenstest"
)

// chain is a tree of exchanges: a's token for b (root), exchanged by b for
// c and for d, and c's for e; plus a token unrelated to it.
type chain struct {
	a, b, c, d, e *tokenstest.Workload
	root, bc, bd  *tokens.Response
	ce, unrelated *tokens.Response
}

func newChain(t *testing.T, env *tokenstest.Env) *chain {
	t.Helper()
	ch := &chain{a: env.Workload(t, "a"), b: env.Workload(t, "b"), c: env.Workload(t, "c"), d: env.Workload(t, "d"), e: env.Workload(t, "e")}
	ch.root = mustToken(t, env.Service, ch.a, cc(ch.b.ID, "scope", "read"))
	ch.bc = mustToken(t, env.Service, ch.b, exchange(ch.root.AccessToken, ch.c.ID))
	ch.bd = mustToken(t, env.Service, ch.b, exchange(ch.root.AccessToken, ch.d.ID))
	ch.ce = mustToken(t, env.Service, ch.c, exchange(ch.bc.AccessToken, ch.e.ID))
	ch.unrelated = mustToken(t, env.Service, ch.a, cc(ch.c.ID))
	return ch
}

// derived are the tokens of the tree, root first.
func (ch *chain) derived() []*tokens.Response {
	return []*tokens.Response{ch.root, ch.bc, ch.bd, ch.ce}
}

// Revoking the root revokes every token exchanged from it, transitively,
// each with a token.revoked audit entry; a token from it can no longer be
// exchanged; revoking again does nothing.
func TestRevokeCascades(t *testing.T) {
	t.Parallel()
	e := tokenstest.New(t)
	ch := newChain(t, e)
	if err := e.Service.Revoke(t.Context(), ch.a.Cert, ch.root.AccessToken); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	for _, r := range ch.derived() {
		rec, err := e.Store.Token(t.Context(), r.JTI)
		if err != nil || rec.RevokedAt == nil || rec.RevocationReason != "revoked by its holder" {
			t.Errorf("token %s: %+v (%v), want revoked by its holder", r.JTI, rec, err)
		}
		kind, p := auditEntry(t, e.Store, "revoked:"+r.JTI)
		if kind != audit.TokenRevoked || p.JTI != r.JTI || p.Sub != ch.a.ID {
			t.Errorf("audit entry of %s: %s %+v", r.JTI, kind, p)
		}
	}
	if rec, _ := e.Store.Token(t.Context(), ch.unrelated.JTI); rec.RevokedAt != nil {
		t.Error("an unrelated token was revoked")
	}
	_, err := e.Service.Token(t.Context(), ch.c.Cert, exchange(ch.bc.AccessToken, ch.e.ID))
	if oe := oauthErr(t, err); oe.Code != tokens.InvalidRequest {
		t.Errorf("exchange of a revoked token: %v, want invalid_request", err)
	}
	size, _ := e.Store.AuditSize(t.Context())
	if err := e.Service.Revoke(t.Context(), ch.a.Cert, ch.root.AccessToken); err != nil {
		t.Errorf("revoking again: %v", err)
	}
	if n, _ := e.Store.AuditSize(t.Context()); n != size {
		t.Errorf("revoking again logged %d entries", n-size)
	}
}

// Who may revoke: the holder, the client, the audience, an admin; not the
// subject or a stranger. Tokens that are neither ours nor a configured
// issuer's live ones are a silent success (user tokens: external_test.go).
func TestRevokeAuthorization(t *testing.T) {
	t.Parallel()
	e := tokenstest.New(t)
	ch := newChain(t, e)
	admin, stranger := e.Client(t, tokenstest.Admin), e.Workload(t, "stranger")
	renewed := tokenstest.Issue(t, e.CA, ch.b.ID, e.Evidence()) // b's next certificate
	e.Record(t, renewed)
	tests := []struct {
		name   string
		caller *tokenstest.Workload
		ok     bool
	}{
		{"holder", ch.b, true},
		{"client with a renewed certificate", renewed, true},
		{"audience", ch.c, true},
		{"admin", admin, true},
		{"subject", ch.a, false},
		{"stranger", stranger, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok := mustToken(t, e.Service, ch.b, exchange(ch.root.AccessToken, ch.c.ID))
			err := e.Service.Revoke(t.Context(), tt.caller.Cert, tok.AccessToken)
			rec, _ := e.Store.Token(t.Context(), tok.JTI)
			switch {
			case tt.ok && (err != nil || rec.RevokedAt == nil):
				t.Errorf("Revoke = %v, revoked %v; want revoked", err, rec.RevokedAt != nil)
			case !tt.ok && (oauthErr(t, err).Code != tokens.UnauthorizedClient || rec.RevokedAt != nil):
				t.Errorf("Revoke = %v, revoked %v; want unauthorized_client", err, rec.RevokedAt != nil)
			}
		})
	}
	expired := e.IdP.Sign(t, map[string]any{"iss": tokenstest.IdPIssuer, "sub": "alice", "aud": []string{ch.b.ID},
		"exp": time.Now().Add(-time.Hour).Unix(), "jti": "expired"})
	unknown := tokenstest.NewIdP(t, "https://unknown-idp.test").Token(t, "alice", ch.b.ID, "")
	for _, tok := range []string{"", "garbage", "a.b.c", expired, unknown} {
		if err := e.Service.Revoke(t.Context(), stranger.Cert, tok); err != nil {
			t.Errorf("Revoke(%.12q) = %v, want success (RFC 7009 §2.2)", tok, err)
		}
	}
}

// Fail closed: a revocation whose audit entries cannot be appended does
// not take effect.
func TestRevokeNotRecorded(t *testing.T) {
	t.Parallel()
	e := tokenstest.New(t)
	ch := newChain(t, e)
	cfg := e.Config
	cfg.Store = brokenLog{e.Store}
	err := e.Start(t, cfg).Revoke(t.Context(), ch.a.Cert, ch.root.AccessToken)
	if !errors.Is(err, tokens.ErrNotRecorded) {
		t.Fatalf("Revoke = %v, want ErrNotRecorded", err)
	}
	admin := e.Client(t, tokenstest.Admin)
	for _, r := range ch.derived() {
		if in, err := e.Service.Introspect(t.Context(), admin.Cert, r.AccessToken); err != nil || !in.Active {
			t.Errorf("token %s inactive (%v) after a failed revocation", r.JTI, err)
		}
	}
}
