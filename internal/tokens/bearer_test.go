package tokens_test

import (
	"errors"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/internal/tokens"
	"github.com/sigil-dev/sigil/internal/tokens/tokenstest"
)

// TestBearer: a token presented as a bearer token to a resource of sigild
// (the Shared Signals transmitter) is its subject's only if it is an
// access token of ours for that resource's audience, on record, not
// revoked, its certificate not revoked, and presented over no certificate
// or its own.
func TestBearer(t *testing.T) {
	t.Parallel()
	e := tokenstest.New(t)
	const aud = "spiffe://sigil.test/sigild/ssf"
	w, other, gone := e.Workload(t, "siem"), e.Workload(t, "other"), e.Workload(t, "gone")
	good := mustToken(t, e.Service, w, cc(aud)).AccessToken
	revoked := mustToken(t, e.Service, w, cc(aud))
	if _, err := e.Store.RevokeToken(t.Context(), revoked.JTI, "revoked by its holder", time.Now()); err != nil {
		t.Fatal(err)
	}
	certRevoked := mustToken(t, e.Service, gone, cc(aud)).AccessToken
	e.RevokeCertificate(t, gone)
	ctx := t.Context()
	if sub, err := e.Service.Bearer(ctx, good, aud, nil); err != nil || sub != w.ID {
		t.Fatalf("Bearer(good) = %q, %v; want %s", sub, err, w.ID)
	}
	if sub, err := e.Service.Bearer(ctx, good, aud, w.Cert); err != nil || sub != w.ID {
		t.Fatalf("Bearer(good over its certificate) = %q, %v", sub, err)
	}
	for _, tc := range []struct {
		name, tok, aud string
		over           *tokenstest.Workload
	}{
		{"another audience", good, "spiffe://sigil.test/workload/db", nil},
		{"a token for another audience", mustToken(t, e.Service, w, cc("spiffe://sigil.test/workload/db")).AccessToken, aud, nil},
		{"revoked", revoked.AccessToken, aud, nil},
		{"its certificate revoked", certRevoked, aud, nil},
		{"over another workload's certificate", good, aud, other},
		{"an IdP's token", e.IdP.Token(t, "alice", aud, ""), aud, nil},
		{"a reference token", mustToken(t, e.Service, w, cc(tokenstest.OpaqueAudience)).AccessToken, tokenstest.OpaqueAudience, nil},
		{"garbage", "a.b.c", aud, nil},
		{"empty", "", aud, nil},
	} {
		if sub, err := e.Service.Bearer(ctx, tc.tok, tc.aud, certOf(tc.over)); !errors.Is(err, tokens.ErrInvalidToken) {
			t.Errorf("%s: Bearer = %q, %v; want ErrInvalidToken", tc.name, sub, err)
		}
	}
}
