package tokens_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/sigil-dev/sigil/api"
	"github.com/sigil-dev/sigil/internal/device"
	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/internal/tokens"
	"github.com/sigil-dev/sigil/internal/tokens/tokenstest"
	"github.com/sigil-dev/sigil/testenv"
	"github.com/sigil-dev/sigil/token"
)

// The attack: a workload whose certificate is revoked (its device
// disabled, its key compromised) keeps using the tokens it was issued.
// Revoking the certificate revokes them, and every token exchanged from
// them: introspection answers inactive, an exchange refuses them as
// subjects, and the feed publishes the certificate's revocation, then each
// token's.
func TestCertificateRevocationKillsTokens(t *testing.T) {
	t.Parallel()
	e := tokenstest.New(t)
	ch := newChain(t, e)
	opaque := mustToken(t, e.Service, ch.a, cc(ch.b.ID, "requested_token_type", api.TokenTypeAccessToken))
	rs := e.Workload(t, "rs")
	sub, err := e.Service.Subscribe(t.Context(), rs.Cert, "")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()

	e.RevokeCertificate(t, ch.a)

	for _, tc := range []struct {
		name   string
		holder *tokenstest.Workload
		tok    string
	}{
		{"its token", ch.b, ch.root.AccessToken},
		{"its reference token", ch.b, opaque.AccessToken},
		{"a token exchanged from its token", ch.c, ch.bc.AccessToken},
		{"two exchanges down", ch.e, ch.ce.AccessToken},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in, err := e.Service.Introspect(t.Context(), tc.holder.Cert, tc.tok)
			if err != nil || in.Active {
				t.Errorf("Introspect = %+v, %v; want inactive", in, err)
			}
		})
	}
	for _, tc := range []struct {
		name   string
		caller *tokenstest.Workload
		form   map[string][]string
	}{
		{"its token", ch.b, exchange(ch.root.AccessToken, ch.c.ID)},
		{"its reference token", ch.b, form("grant_type", tokens.GrantTokenExchange, "subject_token", opaque.AccessToken,
			"subject_token_type", api.TokenTypeAccessToken, "audience", ch.c.ID)},
		{"a token exchanged from its token", ch.c, exchange(ch.bc.AccessToken, ch.e.ID)},
	} {
		t.Run("exchange of "+tc.name, func(t *testing.T) {
			_, err := e.Service.Token(t.Context(), tc.caller.Cert, tc.form)
			if oe := oauthErr(t, err); oe.Code != tokens.InvalidRequest || !strings.Contains(oe.Description, "revoked") {
				t.Errorf("exchange = %v, want invalid_request: revoked", err)
			}
		})
	}
	rec, err := e.Store.Token(t.Context(), ch.root.JTI)
	if err != nil || rec.RevocationReason != store.CertificateRevokedPrefix+"key compromise" {
		t.Errorf("token record %+v (%v), want revoked for %q", rec, err, store.CertificateRevokedPrefix+"key compromise")
	}
	if in, err := e.Service.Introspect(t.Context(), ch.c.Cert, ch.unrelated.AccessToken); err != nil || in.Active {
		t.Errorf("a's other token: %+v, %v; want inactive too", in, err)
	}

	// The feed: the certificate first, named by its ni URI, then its
	// tokens.
	ev := next(t, sub)
	c := certificateSET(t, e, ev)
	r := c.Events[tokens.EventCertificateRevoked]
	x5t := token.Thumbprint(ch.a.Cert.Raw)
	if c.SubID.Format != "uri" || c.SubID.URI != "ni:///sha-256;"+x5t || r.X5tS256 != x5t ||
		r.Serial != device.Serial(ch.a.Cert) || r.NotAfter != ch.a.Cert.NotAfter.Unix() || r.Reason != "key compromise" {
		t.Errorf("certificate event %+v", c)
	}
	got := map[string]bool{}
	for range 6 { // root, unrelated, opaque, bc, bd, ce
		got[verifySET(t, e, next(t, sub))] = true
	}
	for _, want := range []*tokens.Response{ch.root, ch.unrelated, opaque, ch.bc, ch.bd, ch.ce} {
		if !got[want.JTI] {
			t.Errorf("no revocation event for %s", want.JTI)
		}
	}
}

// The race: a certificate revoked while a token request of its holder is
// in flight. The store refuses to record the token, and the service
// answers invalid_client: on SQLite, and on PostgreSQL, whose
// RecordToken records in one round trip.
func TestTokenForCertificateRevokedMeanwhile(t *testing.T) {
	t.Parallel()
	for name, newEnv := range map[string]func(testing.TB, ...func(*tokens.Config)) *tokenstest.Env{
		"sqlite": tokenstest.New,
		"postgres": func(t testing.TB, opts ...func(*tokens.Config)) *tokenstest.Env {
			return tokenstest.NewOn(t, testenv.PostgresDB(t), opts...)
		},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var env *tokenstest.Env
			var a *tokenstest.Workload
			revoked := false
			env = newEnv(t, func(c *tokens.Config) {
				st := c.Store
				c.Store = revokeOnTx{Store: st, before: func() {
					if a != nil && !revoked {
						revoked = true
						if _, err := st.RevokeCertificate(t.Context(), device.Serial(a.Cert), "key compromise", time.Now()); err != nil {
							t.Error(err)
						}
					}
				}}
			})
			b := env.Workload(t, "b")
			a = env.Workload(t, "a")
			_, err := env.Service.Token(t.Context(), a.Cert, cc(b.ID))
			if oe := oauthErr(t, err); oe.Code != tokens.InvalidClient || !strings.Contains(oe.Description, "revoked") {
				t.Fatalf("Token with the certificate revoked meanwhile = %v, want invalid_client: revoked", err)
			}
		})
	}
}

// revokeOnTx calls before ahead of every Tx and RecordToken: after the
// service has authenticated the caller, before it records the token.
type revokeOnTx struct {
	store.Store
	before func()
}

func (r revokeOnTx) Tx(ctx context.Context, fn func(store.Tx) error) error {
	r.before()
	return r.Store.Tx(ctx, fn)
}

// RecordToken records through the store's own RecordToken, if it has one.
func (r revokeOnTx) RecordToken(ctx context.Context, rec store.TokenRecord) error {
	if st, ok := r.Store.(store.TokenRecorder); ok {
		r.before()
		return st.RecordToken(ctx, rec)
	}
	return r.Tx(ctx, func(tx store.Tx) error { return rec.In(ctx, tx) })
}

// certificateSET verifies a certificate revocation event as verifySET does
// a token's and returns its claims.
func certificateSET(t *testing.T, e *tokenstest.Env, ev tokens.Event) tokens.SETClaims {
	t.Helper()
	jws, err := jose.ParseSignedCompact(ev.SET, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatalf("SET: %v", err)
	}
	jwks, err := e.Service.JWKS()
	if err != nil {
		t.Fatal(err)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(jwks, &set); err != nil {
		t.Fatal(err)
	}
	keys := set.Key(jws.Signatures[0].Protected.KeyID)
	if len(keys) != 1 {
		t.Fatal("SET signed by an unpublished key")
	}
	payload, err := jws.Verify(keys[0].Key)
	if err != nil {
		t.Fatalf("SET signature: %v", err)
	}
	var c tokens.SETClaims
	if err := json.Unmarshal(payload, &c); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.Events[tokens.EventCertificateRevoked]; !ok || c.Events[tokens.EventCertificateRevoked].Seq != ev.Seq {
		t.Fatalf("SET %+v for event %d: want a certificate revocation", c, ev.Seq)
	}
	return c
}

// A token whose certificate is revoked though its own record is not (its
// certificate revoked before revocations cascaded, or by a backend that
// did not cascade) is inactive and refused as a subject all the same: the
// service checks the certificate, not only the token's record.
func TestTokenOfRevokedCertificateWithoutCascade(t *testing.T) {
	t.Parallel()
	var gone string // x5t#S256 of the certificate the store reports revoked
	e := tokenstest.New(t, func(c *tokens.Config) {
		c.Store = certRevokedStore{Store: c.Store, x5t: &gone}
	})
	a, b, c := e.Workload(t, "a"), e.Workload(t, "b"), e.Workload(t, "c")
	ab := mustToken(t, e.Service, a, cc(b.ID))
	if in, err := e.Service.Introspect(t.Context(), b.Cert, ab.AccessToken); err != nil || !in.Active {
		t.Fatalf("Introspect before = %+v, %v; want active", in, err)
	}
	gone = token.Thumbprint(a.Cert.Raw)
	if in, err := e.Service.Introspect(t.Context(), b.Cert, ab.AccessToken); err != nil || in.Active {
		t.Errorf("Introspect with its certificate revoked = %+v, %v; want inactive", in, err)
	}
	_, err := e.Service.Token(t.Context(), b.Cert, exchange(ab.AccessToken, c.ID))
	if oe := oauthErr(t, err); oe.Code != tokens.InvalidRequest || !strings.Contains(oe.Description, "revoked") {
		t.Errorf("exchange = %v, want invalid_request: revoked", err)
	}
}

// certRevokedStore reports the certificate with thumbprint *x5t revoked
// when looked up by thumbprint, and changes nothing else.
type certRevokedStore struct {
	store.Store
	x5t *string
}

func (s certRevokedStore) CertificateByThumbprint(ctx context.Context, x5t string) (store.Certificate, error) {
	c, err := s.Store.CertificateByThumbprint(ctx, x5t)
	if err == nil && x5t == *s.x5t {
		at := time.Now()
		c.RevokedAt, c.RevocationReason = &at, "key compromise"
	}
	return c, err
}

// The attack on the per-connection authentication: a workload keeps its
// kept-alive connection (the same certificate object) after its
// certificate is revoked. The first request after the revocation is
// refused by the writing transaction, every later one by the store lookup
// again; none is issued.
func TestTokenOnConnectionAfterRevocation(t *testing.T) {
	t.Parallel()
	e := tokenstest.New(t)
	b := e.Workload(t, "b")
	a := e.Workload(t, "a")
	for range 2 { // authenticated once, from the cache the second time
		if _, err := e.Service.Token(t.Context(), a.Cert, cc(b.ID)); err != nil {
			t.Fatalf("Token before the revocation: %v", err)
		}
	}
	e.RevokeCertificate(t, a)
	for i := range 3 {
		resp, err := e.Service.Token(t.Context(), a.Cert, cc(b.ID))
		if oe := oauthErr(t, err); resp != nil || oe.Code != tokens.InvalidClient || !strings.Contains(oe.Description, "revoked") {
			t.Fatalf("request %d after the revocation: %+v, %v; want invalid_client: revoked", i, resp, err)
		}
	}
}

// The per-connection authentication still checks expiry at every request:
// a connection outliving its certificate gets no token.
func TestTokenOnConnectionAfterExpiry(t *testing.T) {
	t.Parallel()
	var skew atomic.Int64
	e := tokenstest.New(t, func(c *tokens.Config) {
		c.Now = func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	})
	b := e.Workload(t, "b")
	a := e.Workload(t, "a")
	if _, err := e.Service.Token(t.Context(), a.Cert, cc(b.ID)); err != nil {
		t.Fatalf("Token before expiry: %v", err)
	}
	skew.Store(int64(time.Until(a.Cert.NotAfter) + time.Second))
	resp, err := e.Service.Token(t.Context(), a.Cert, cc(b.ID))
	if oe := oauthErr(t, err); resp != nil || oe.Code != tokens.InvalidClient || !strings.Contains(oe.Description, "expired") {
		t.Fatalf("Token after expiry: %+v, %v; want invalid_client: expired", resp, err)
	}
}
