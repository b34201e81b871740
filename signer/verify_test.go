package signer_test

import (
	"bytes"
	"errors"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/hsm"
	"github.com/sigil-dev/sigil/signer"
	"github.com/sigil-dev/sigil/token"
)

// TestSubjectTokenAttacks runs every attack token through the Verifier as
// the token endpoint verifies a subject token, for a trusted key of each
// algorithm.
func TestSubjectTokenAttacks(t *testing.T) {
	for _, alg := range []hsm.Alg{hsm.ES256, hsm.ES384, hsm.PS256} {
		t.Run(string(alg), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, alg)
			key := e.hsmKey(t)
			k := newKit(t, e.clock.Now(), key, string(key.Alg()), key.KID())
			for _, a := range attacks() {
				t.Run(a.name, func(t *testing.T) {
					k.t = t
					c, err := a.verify(t.Context(), e.verify, a.token(k))
					if got := kindOf(t, err); got != a.code {
						t.Fatalf("got %v (%v), want %v", got, err, a.code)
					}
					if a.code == ok && (c.Subject != "user@example.com" || c.Issuer != issuer) {
						t.Fatalf("accepted with claims %+v", c)
					}
				})
			}
		})
	}
}

func TestVerifyReturnsMintedClaims(t *testing.T) {
	e := newEnv(t, hsm.ES256)
	tok, signed := e.accessToken(t, token.Claims{
		Subject: "user@example.com", Audience: []string{callerB.ID, "https://api.test"}, ClientID: callerA.ID,
		Scope: []string{"read", "write"}, Confirmation: callerA.Thumbprint, Evidence: callerA.Evidence, Policy: callerA.Policy,
		SubjectIssuer: idpIssuer, Actor: &token.Actor{Subject: callerA.ID},
	}, 5*time.Minute)
	got, err := e.verify.Verify(t.Context(), tok, "https://api.test")
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if !reflect.DeepEqual(got, signed) {
		t.Fatalf("verified claims differ from the signed ones:\n got %+v\nwant %+v", got, signed)
	}
}

func TestVerifyErrorKinds(t *testing.T) {
	e := newEnv(t, hsm.ES256)
	tok, _ := e.accessToken(t, token.Claims{Subject: callerA.ID, Audience: []string{callerB.ID}}, time.Minute)
	tests := []struct {
		name   string
		token  string
		aud    string
		kind   error
		reason string
	}{
		{"oversized", strings.Repeat("a", signer.MaxTokenSize+1), callerB.ID, signer.ErrMalformed, "token too large"},
		{"JWE", "a.b.c.d.e", callerB.ID, signer.ErrMalformed, "encrypted tokens (JWE) are not accepted"},
		{"wrong audience", tok, callerC.ID, signer.ErrInvalid, "wrong audience"},
		{"empty audience expected", tok, "", signer.ErrInvalid, "wrong audience"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.verify.Verify(t.Context(), tt.token, tt.aud)
			var te *signer.TokenError
			if !errors.As(err, &te) || !errors.Is(err, tt.kind) || te.Reason != tt.reason {
				t.Fatalf("got %v, want %v with reason %q", err, tt.kind, tt.reason)
			}
		})
	}
}

func TestVerifyTxn(t *testing.T) {
	e := newEnv(t, hsm.ES256)
	c := token.Claims{Subject: "user@example.com", SubjectIssuer: idpIssuer, Audience: []string{"spiffe://sigil.test"}, Scope: []string{"read"}, RequestingWorkload: callerA.ID,
		TxnContext: map[string]any{"action": "buy"}, RequestContext: map[string]any{"req_ip": "192.0.2.1"},
		Expiry: e.clock.Now().Add(time.Minute)}
	m, err := e.mint.TxnToken(t.Context(), c)
	if err != nil {
		t.Fatalf("TxnToken: %v", err)
	}
	txn, signed := m.Token, m.Claims
	if h := decodeSegment(t, txn, 0); h["typ"] != "txntoken+jwt" {
		t.Fatalf("typ = %v", h["typ"])
	}
	got, err := e.verify.VerifyTxn(t.Context(), txn, "spiffe://sigil.test")
	if err != nil || !reflect.DeepEqual(got, signed) || got.Txn == "" {
		t.Fatalf("VerifyTxn = %+v, %v; want %+v", got, err, signed)
	}
	if _, err := e.verify.Verify(t.Context(), txn, "spiffe://sigil.test"); !errors.Is(err, signer.ErrInvalid) {
		t.Fatalf("Verify accepted a transaction token as an access token: %v", err)
	}
	at, _ := e.accessToken(t, token.Claims{Subject: callerA.ID, Audience: []string{"spiffe://sigil.test"}}, time.Minute)
	if _, err := e.verify.VerifyTxn(t.Context(), at, "spiffe://sigil.test"); !errors.Is(err, signer.ErrInvalid) {
		t.Fatalf("VerifyTxn accepted an access token: %v", err)
	}
}

// TestTokensNeverLogged mints, verifies and rejects tokens at debug level
// and checks no token, nor its signature, reaches the log.
func TestTokensNeverLogged(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e := newEnv(t, hsm.ES256, signer.WithLogger(log))
	tok, _ := e.accessToken(t, token.Claims{Subject: callerA.ID, Audience: []string{callerB.ID}}, time.Minute)
	if _, err := e.verify.Verify(t.Context(), tok, callerB.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.verify.Verify(t.Context(), tok, callerC.ID); err == nil {
		t.Fatal("wrong audience accepted")
	}
	sig := tok[strings.LastIndex(tok, ".")+1:]
	if !strings.Contains(logs.String(), "token rejected") {
		t.Fatalf("rejection not logged:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), sig) {
		t.Fatalf("a token reached the log:\n%s", logs.String())
	}
}
