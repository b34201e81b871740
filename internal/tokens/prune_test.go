package tokens_test

import (
	"strings"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/api"
	"github.com/sigil-dev/sigil/internal/tokens/tokenstest"
)

// TestPrunedTokensNeverComeBack: tokens whose records sigild has purged
// (tokens.retention; here purged before they expire, the worst a
// misconfigured retention could do) are inactive to introspection,
// refused as subject tokens, and revoking them is a no-op; their audit
// entries stay; and a revoked certificate stays revoked for new tokens.
func TestPrunedTokensNeverComeBack(t *testing.T) {
	t.Parallel()
	e := tokenstest.New(t)
	a, b, c := e.Workload(t, "a"), e.Workload(t, "b"), e.Workload(t, "c")
	admin := e.Client(t, tokenstest.Admin)
	ab := mustToken(t, e.Service, a, cc(b.ID, "scope", "read write"))
	bc := mustToken(t, e.Service, b, exchange(ab.AccessToken, c.ID, "scope", "read"))
	opaque := mustToken(t, e.Service, a, cc(b.ID, "requested_token_type", api.TokenTypeAccessToken))
	if err := e.Service.Revoke(t.Context(), a.Cert, ab.AccessToken); err != nil {
		t.Fatal(err)
	}
	revoked, err := e.Store.LatestRevocationSeq(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	fresh := mustToken(t, e.Service, a, cc(b.ID, "scope", "read"))

	n, err := e.Store.PurgeExpiredTokens(t.Context(), time.Now().Add(24*time.Hour))
	if err != nil || n < 4 {
		t.Fatalf("PurgeExpiredTokens = %d, %v; want every token", n, err)
	}
	for _, tc := range []struct {
		name   string
		caller *tokenstest.Workload
		tok    string
	}{
		{"revoked, then pruned", b, ab.AccessToken},
		{"exchanged from a revoked token, then pruned", c, bc.AccessToken},
		{"reference token, pruned", b, opaque.AccessToken},
		{"live when pruned", b, fresh.AccessToken},
		{"live when pruned, to an admin", admin, fresh.AccessToken},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in, err := e.Service.Introspect(t.Context(), tc.caller.Cert, tc.tok)
			if err != nil || in.Active {
				t.Fatalf("Introspect = %+v, %v; want active:false", in, err)
			}
		})
	}
	for name, subject := range map[string]string{"revoked, then pruned": ab.AccessToken, "live when pruned": fresh.AccessToken} {
		_, err := e.Service.Token(t.Context(), b.Cert, exchange(subject, c.ID, "scope", "read"))
		if oe := oauthErr(t, err); oe.Code != "invalid_request" || !strings.Contains(oe.Error(), "not a token this server issued") {
			t.Errorf("exchange of a pruned token (%s) = %v, want invalid_request: not a token this server issued", name, oe)
		}
	}
	if err := e.Service.Revoke(t.Context(), a.Cert, fresh.AccessToken); err != nil {
		t.Fatalf("revoking a pruned token: %v, want nil (RFC 7009)", err)
	}
	if seq, err := e.Store.LatestRevocationSeq(t.Context()); err != nil || seq != revoked {
		t.Fatalf("revocation feed at %d, %v after revoking a pruned token; want %d (nothing recorded)", seq, err, revoked)
	}
	for _, jti := range []string{ab.JTI, bc.JTI, fresh.JTI} {
		if kind, _ := auditEntry(t, e.Store, "jti:"+jti); kind == "" {
			t.Errorf("the audit entry of %s is gone with its record", jti)
		}
	}

	e.RevokeCertificate(t, a)
	if _, err := e.Store.PurgeExpiredTokens(t.Context(), time.Now().Add(24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Service.Token(t.Context(), a.Cert, cc(b.ID, "scope", "read")); err == nil {
		t.Fatal("a token for a revoked certificate after a purge")
	}
}
