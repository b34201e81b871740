package tokens_test

import (
	"bytes"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"log/slog"
	"math/big"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/audit"
	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/internal/tokens"
	"github.com/sigil-dev/sigil/internal/tokens/tokenstest"
	"github.com/sigil-dev/sigil/signer"
	"github.com/sigil-dev/sigil/token"
)

// externalJTI is the name of an external token's record: "ext:" and the
// SHA-256 of what its issuer signed.
func externalJTI(tok string) string {
	sum := sha256.Sum256([]byte(tok[:strings.LastIndexByte(tok, '.')]))
	return store.ExternalPrefix + base64.RawURLEncoding.EncodeToString(sum[:])
}

// userChain is alice's IdP token for the frontend, exchanged by the
// frontend for orders, and by orders for payments.
type userChain struct {
	frontend, orders, payments *tokenstest.Workload
	user                       string
	fo, op                     *tokens.Response
}

func newUserChain(t *testing.T, e *tokenstest.Env, svc *tokens.Service) *userChain {
	t.Helper()
	uc := &userChain{frontend: e.Workload(t, "frontend"), orders: e.Workload(t, "orders"), payments: e.Workload(t, "payments")}
	uc.user = e.IdP.Token(t, "alice", uc.frontend.ID, "orders:read payments:charge")
	uc.fo = mustToken(t, svc, uc.frontend, exchange(uc.user, uc.orders.ID))
	uc.op = mustToken(t, svc, uc.orders, exchange(uc.fo.AccessToken, uc.payments.ID, "scope", "payments:charge"))
	return uc
}

// active reports whether tok is active for its audience aud.
func active(t *testing.T, svc *tokens.Service, aud *tokenstest.Workload, tok string) bool {
	t.Helper()
	in, err := svc.Introspect(t.Context(), aud.Cert, tok)
	if err != nil {
		t.Fatalf("Introspect: %v", err)
	}
	return in.Active
}

// refused checks that exchanging subject as w fails with invalid_request
// saying want.
func refused(t *testing.T, svc *tokens.Service, w *tokenstest.Workload, subject, aud, want string) {
	t.Helper()
	r, err := svc.Token(t.Context(), w.Cert, exchange(subject, aud))
	if err == nil {
		t.Errorf("exchange by %s issued %s, want invalid_request", w.ID, r.JTI)
		return
	}
	if oe := oauthErr(t, err); oe.Code != tokens.InvalidRequest || !strings.Contains(oe.Description, want) {
		t.Errorf("exchange by %s: %v, want invalid_request saying %q", w.ID, err, want)
	}
}

// The frontend revokes a user's token: every token exchanged from it is
// revoked, each with its token.revoked audit entry and feed event, and
// the user's token is refused from then on; another user's is not.
func TestRevokeUserToken(t *testing.T) {
	t.Parallel()
	e := tokenstest.New(t)
	uc := newUserChain(t, e, e.Service)
	ext := externalJTI(uc.user)
	sub, err := e.Service.Subscribe(t.Context(), e.Workload(t, "rs").Cert, "")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	size, _ := e.Store.AuditSize(t.Context())
	if err := e.Service.Revoke(t.Context(), uc.frontend.Cert, uc.user); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	if active(t, e.Service, uc.orders, uc.fo.AccessToken) || active(t, e.Service, uc.payments, uc.op.AccessToken) {
		t.Error("a token exchanged from the revoked user token is still active")
	}
	refused(t, e.Service, uc.frontend, uc.user, uc.orders.ID, "subject_token has been revoked")
	refused(t, e.Service, uc.orders, uc.fo.AccessToken, uc.payments.ID, "subject_token has been revoked")

	want := []string{ext, uc.fo.JTI, uc.op.JTI}
	for _, jti := range want {
		rec, err := e.Store.Token(t.Context(), jti)
		if err != nil || rec.RevokedAt == nil || rec.RevocationReason != "revoked by its audience" {
			t.Errorf("record of %s: %+v (%v), want revoked by its audience", jti, rec, err)
		}
		kind, p := auditEntry(t, e.Store, "revoked:"+jti)
		if kind != audit.TokenRevoked || p.JTI != jti || p.Sub != "alice" {
			t.Errorf("audit entry of %s: %s %+v", jti, kind, p)
		}
	}
	if n, _ := e.Store.AuditSize(t.Context()); n != size+3 {
		t.Errorf("revocation logged %d entries, want 3", n-size)
	}
	var got []string
	for range want {
		got = append(got, verifySET(t, e, next(t, sub)))
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("feed published %v, want %v", got, want)
	}

	if err := e.Service.Revoke(t.Context(), uc.frontend.Cert, uc.user); err != nil {
		t.Errorf("revoking again: %v", err)
	}
	if n, _ := e.Store.AuditSize(t.Context()); n != size+3 {
		t.Errorf("revoking again logged %d entries", n-size-3)
	}
	bob := e.IdP.Token(t, "bob", uc.frontend.ID, "orders:read")
	mustToken(t, e.Service, uc.frontend, exchange(bob, uc.orders.ID))
}

// Only a party in the user token's audience or an admin may revoke it;
// anyone else, even a party to the chain, gets unauthorized_client and
// nothing is revoked.
func TestRevokeUserTokenAuthorization(t *testing.T) {
	t.Parallel()
	e := tokenstest.New(t)
	admin, stranger := e.Client(t, tokenstest.Admin), e.Workload(t, "stranger")
	tests := []struct {
		name   string
		caller func(*userChain) *tokenstest.Workload
		ok     bool
	}{
		{"audience", func(uc *userChain) *tokenstest.Workload { return uc.frontend }, true},
		{"admin", func(*userChain) *tokenstest.Workload { return admin }, true},
		{"party to the chain", func(uc *userChain) *tokenstest.Workload { return uc.orders }, false},
		{"stranger", func(*userChain) *tokenstest.Workload { return stranger }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			uc := newUserChain(t, e, e.Service)
			size, _ := e.Store.AuditSize(t.Context())
			err := e.Service.Revoke(t.Context(), tt.caller(uc).Cert, uc.user)
			rec, _ := e.Store.Token(t.Context(), externalJTI(uc.user))
			if tt.ok {
				if err != nil || rec.RevokedAt == nil || active(t, e.Service, uc.payments, uc.op.AccessToken) {
					t.Errorf("Revoke = %v, revoked %v; want the chain revoked", err, rec.RevokedAt != nil)
				}
				return
			}
			if oe := oauthErr(t, err); oe.Code != tokens.UnauthorizedClient {
				t.Errorf("Revoke = %v, want unauthorized_client", err)
			}
			if n, _ := e.Store.AuditSize(t.Context()); rec.RevokedAt != nil || n != size {
				t.Errorf("refused revocation revoked %v, logged %d entries", rec.RevokedAt != nil, n-size)
			}
			if !active(t, e.Service, uc.orders, uc.fo.AccessToken) || !active(t, e.Service, uc.payments, uc.op.AccessToken) {
				t.Error("a refused revocation deactivated the chain")
			}
			mustToken(t, e.Service, uc.frontend, exchange(uc.user, uc.orders.ID))
		})
	}
}

// A user token revoked before anything was exchanged from it is refused
// when it comes.
func TestRevokeUserTokenBeforeExchange(t *testing.T) {
	t.Parallel()
	e := tokenstest.New(t)
	frontend, orders := e.Workload(t, "frontend"), e.Workload(t, "orders")
	user := e.IdP.Token(t, "alice", frontend.ID, "orders:read")
	if err := e.Service.Revoke(t.Context(), frontend.Cert, user); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	refused(t, e.Service, frontend, user, orders.ID, "subject_token has been revoked")
	kind, p := auditEntry(t, e.Store, "revoked:"+externalJTI(user))
	if kind != audit.TokenRevoked || p.Sub != "alice" || !slices.Equal(p.Aud, []string{frontend.ID}) || p.CNF != "" {
		t.Errorf("audit entry %s %+v", kind, p)
	}
}

// Exchanging a user token records it, as the parent of the new token, by
// a name derived from it and never the token itself, in the database or
// the service's log; recording it is not audited of its own.
func TestUserTokenRecord(t *testing.T) {
	t.Parallel()
	e := tokenstest.New(t)
	var logs lockedBuffer
	cfg := e.Config
	cfg.Log = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	svc := e.Start(t, cfg)
	uc := newUserChain(t, e, svc)
	mustToken(t, svc, uc.frontend, exchange(uc.user, uc.payments.ID)) // recorded once
	ext := externalJTI(uc.user)
	rec, err := e.Store.Token(t.Context(), ext)
	switch {
	case err != nil:
		t.Fatalf("record of the user token: %v", err)
	case rec.Kind != store.TokenExternal || rec.Sub != "alice" || !slices.Equal(rec.Aud, []string{uc.frontend.ID}) ||
		rec.Scope != "orders:read payments:charge" || rec.ParentJTI != "" || rec.ClientID != "" || rec.CNF != "" || rec.RevokedAt != nil:
		t.Errorf("record of the user token: %+v", rec)
	case !rec.ExpiresAt.Equal(verifyExternal(t, e, uc.user, uc.frontend.ID).Expiry):
		t.Errorf("record expires %v, the token %v", rec.ExpiresAt, verifyExternal(t, e, uc.user, uc.frontend.ID).Expiry)
	}
	children, err := e.Store.TokenChildren(t.Context(), ext)
	if err != nil || len(children) != 2 || !slices.ContainsFunc(children, func(c store.Token) bool { return c.JTI == uc.fo.JTI }) {
		t.Errorf("tokens exchanged from the user token: %+v, %v", children, err)
	}
	if _, p := auditEntry(t, e.Store, "jti:"+uc.fo.JTI); p.ParentJTI != ext {
		t.Errorf("audited parent %q, want %q", p.ParentJTI, ext)
	}
	if _, err := e.Store.AuditIndex(t.Context(), "jti:"+ext); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("recording the user token was audited: %v", err)
	}
	if err := svc.Revoke(t.Context(), uc.frontend.Cert, uc.user); err != nil {
		t.Fatal(err)
	}
	signature := uc.user[strings.LastIndexByte(uc.user, '.')+1:]
	for _, f := range []string{e.DBPath, e.DBPath + "-wal"} {
		data, err := os.ReadFile(f)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		if bytes.Contains(data, []byte(signature)) {
			t.Errorf("%s holds the user token", f)
		}
	}
	if !strings.Contains(logs.String(), ext) || strings.Contains(logs.String(), signature) {
		t.Errorf("the log names the user token by its record %v, holds it %v; want by its record only",
			strings.Contains(logs.String(), ext), strings.Contains(logs.String(), signature))
	}
}

// Tokens of two issuers with the same jti, sub, aud and exp, and two
// tokens of one issuer repeating a jti, are told apart: revoking one
// leaves the others.
func TestUserTokensApart(t *testing.T) {
	t.Parallel()
	e := tokenstest.New(t)
	other := tokenstest.NewIdP(t, "https://idp2.test")
	verifier, err := signer.NewVerifier(tokenstest.Issuer, e.Keys,
		signer.WithExternalIssuers(e.IdP.Issuer(), other.Issuer()), signer.WithLogger(tokenstest.Logger(t)))
	if err != nil {
		t.Fatal(err)
	}
	cfg := e.Config
	cfg.Verifier = verifier
	svc := e.Start(t, cfg)
	frontend, orders := e.Workload(t, "frontend"), e.Workload(t, "orders")
	claims := func(iss string, exp time.Duration) map[string]any {
		return map[string]any{"iss": iss, "sub": "alice", "aud": []string{frontend.ID}, "scope": "orders:read",
			"exp": time.Now().Truncate(time.Minute).Add(exp).Unix(), "jti": "same-jti"}
	}
	revoked := e.IdP.Sign(t, claims(tokenstest.IdPIssuer, 10*time.Minute))
	users := []string{
		other.Sign(t, claims("https://idp2.test", 10*time.Minute)),
		e.IdP.Sign(t, claims(tokenstest.IdPIssuer, 11*time.Minute)),
	}
	var issued []*tokens.Response
	for _, u := range append([]string{revoked}, users...) {
		issued = append(issued, mustToken(t, svc, frontend, exchange(u, orders.ID)))
	}
	if err := svc.Revoke(t.Context(), frontend.Cert, revoked); err != nil {
		t.Fatal(err)
	}
	refused(t, svc, frontend, revoked, orders.ID, "subject_token has been revoked")
	if active(t, svc, orders, issued[0].AccessToken) {
		t.Error("the revoked user token's exchange is active")
	}
	for i, u := range users {
		if !active(t, svc, orders, issued[i+1].AccessToken) {
			t.Errorf("user token %d: its exchange was revoked with another token's", i)
		}
		mustToken(t, svc, frontend, exchange(u, orders.ID))
	}
}

// A revoked user token stays refused however it is presented: with its
// ECDSA signature re-encoded (s as n-s, which verifies too), and when it
// has no jti.
func TestRevokedUserTokenReencoded(t *testing.T) {
	t.Parallel()
	e := tokenstest.New(t)
	frontend, orders := e.Workload(t, "frontend"), e.Workload(t, "orders")
	noJTI := e.IdP.Sign(t, map[string]any{"iss": tokenstest.IdPIssuer, "sub": "alice", "aud": []string{frontend.ID},
		"exp": time.Now().Add(10 * time.Minute).Unix()})
	for name, user := range map[string]string{"with jti": e.IdP.Token(t, "alice", frontend.ID, ""), "without jti": noJTI} {
		t.Run(name, func(t *testing.T) {
			mustToken(t, e.Service, frontend, exchange(user, orders.ID))
			if err := e.Service.Revoke(t.Context(), frontend.Cert, user); err != nil {
				t.Fatal(err)
			}
			refused(t, e.Service, frontend, user, orders.ID, "subject_token has been revoked")
			high := highS(t, user)
			verifyExternal(t, e, high, frontend.ID)
			refused(t, e.Service, frontend, high, orders.ID, "subject_token has been revoked")
		})
	}
}

// A revocation racing exchanges of the user token leaves none of their
// tokens valid: each is revoked with it or refused after it.
func TestRevokeUserTokenRacesExchanges(t *testing.T) {
	t.Parallel()
	e := tokenstest.New(t)
	frontend, orders := e.Workload(t, "frontend"), e.Workload(t, "orders")
	user := e.IdP.Token(t, "alice", frontend.ID, "")
	var mu sync.Mutex
	var issued []string
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range 16 {
		wg.Go(func() {
			<-start
			for range 4 {
				r, err := e.Service.Token(t.Context(), frontend.Cert, exchange(user, orders.ID))
				var oe *tokens.Error
				switch {
				case err == nil:
					mu.Lock()
					issued = append(issued, r.JTI)
					mu.Unlock()
				case !errors.As(err, &oe) || oe.Code != tokens.InvalidRequest:
					t.Errorf("exchange: %v, want a token or invalid_request", err)
				}
			}
		})
	}
	wg.Go(func() {
		<-start
		if err := e.Service.Revoke(t.Context(), frontend.Cert, user); err != nil {
			t.Errorf("Revoke: %v", err)
		}
	})
	close(start)
	wg.Wait()
	for _, jti := range issued {
		if rec, err := e.Store.Token(t.Context(), jti); err != nil || rec.RevokedAt == nil {
			t.Errorf("token %s exchanged from the revoked user token: %+v, %v; want revoked", jti, rec, err)
		}
	}
	t.Logf("%d of 64 exchanges issued before the revocation", len(issued))
}

// verifyExternal verifies an external token as the Verifier would for
// aud, failing the test if it does not verify.
func verifyExternal(t *testing.T, e *tokenstest.Env, tok, aud string) *token.Claims {
	t.Helper()
	c, err := e.Config.Verifier.Verify(t.Context(), tok, aud)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	return c
}

// highS re-encodes an ES256 JWT's signature (r, s) as (r, n-s), which
// verifies as well.
func highS(t *testing.T, tok string) string {
	t.Helper()
	i := strings.LastIndexByte(tok, '.')
	sig, err := base64.RawURLEncoding.DecodeString(tok[i+1:])
	if err != nil || len(sig) != 64 {
		t.Fatalf("ES256 signature: %d bytes, %v", len(sig), err)
	}
	s := new(big.Int).SetBytes(sig[32:])
	s.Sub(elliptic.P256().Params().N, s)
	sig = append(sig[:32:32], s.FillBytes(make([]byte, 32))...)
	return tok[:i+1] + base64.RawURLEncoding.EncodeToString(sig)
}

// lockedBuffer is a log destination safe for concurrent writers.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
