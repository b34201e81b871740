package signer_test

import (
	"context"
	"crypto"
	"crypto/elliptic"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/sigil-dev/sigil/hsm"
	"github.com/sigil-dev/sigil/signer"
	"github.com/sigil-dev/sigil/token"
)

// memorySource is a KeySource of keys in process memory: the seam takes
// any crypto.Signer with its metadata.
type memorySource struct {
	infos   []signer.KeyInfo
	signers map[string]crypto.Signer // by label
}

func (m *memorySource) Keys(context.Context) ([]signer.KeyInfo, error) { return m.infos, nil }

func (m *memorySource) Signer(_ context.Context, info signer.KeyInfo) (crypto.Signer, error) {
	return m.signers[info.Label], nil
}

var _ signer.KeySource = (*memorySource)(nil)

func kidOf(t testing.TB, pub crypto.PublicKey) string {
	t.Helper()
	tp, err := (&jose.JSONWebKey{Key: pub}).Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(tp)
}

// TestKeySetOverAnySigner: a KeySet signs through whatever crypto.Signer
// its source hands out, and refuses a version whose metadata does not
// match its key.
func TestKeySetOverAnySigner(t *testing.T) {
	key := newECKey(t, elliptic.P256())
	good := signer.KeyInfo{Name: "jwt", Version: 1, Label: "jwt.v1", KID: kidOf(t, key.Public()), Alg: "ES256"}
	tests := []struct {
		name string
		mod  func(*signer.KeyInfo)
		ok   bool
	}{
		{"metadata of the key", func(*signer.KeyInfo) {}, true},
		{"kid of another key", func(i *signer.KeyInfo) { i.KID = kidOf(t, newECKey(t, elliptic.P256()).Public()) }, false},
		{"alg the key does not fit", func(i *signer.KeyInfo) { i.Alg = "ES384" }, false},
		{"alg outside ours", func(i *signer.KeyInfo) { i.Alg = "HS256" }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			info := good
			tt.mod(&info)
			src := &memorySource{infos: []signer.KeyInfo{info}, signers: map[string]crypto.Signer{"jwt.v1": key}}
			clock := func() time.Time { return t0 }
			ks, err := signer.NewKeySet(src, "jwt", &signer.MemorySeen{}, signer.WithClock(clock))
			if err != nil {
				t.Fatal(err)
			}
			if err := ks.Refresh(t.Context()); (err == nil) != tt.ok {
				t.Fatalf("Refresh: %v, want success %v", err, tt.ok)
			}
			if !tt.ok {
				return
			}
			mint, _ := signer.NewMinter(issuer, ks, signer.WithClock(clock))
			m, err := mint.AccessToken(t.Context(), token.Claims{Subject: callerA.ID, Audience: []string{callerB.ID}, Expiry: t0.Add(time.Minute)})
			if err != nil || m.KID != good.KID {
				t.Fatalf("AccessToken: kid %q, %v; want %q", m.KID, err, good.KID)
			}
			v, _ := signer.NewVerifier(issuer, ks, signer.WithClock(clock))
			if _, err := v.Verify(t.Context(), m.Token, callerB.ID); err != nil {
				t.Fatalf("Verify: %v", err)
			}
		})
	}
}

// TestKeySetSign: other statements are signed with the version that signs
// tokens, under their own typ, and not by a stale key set.
func TestKeySetSign(t *testing.T) {
	e := newEnv(t, hsm.ES256, signer.WithLead(5*time.Minute))
	jws, kid, err := e.keys.Sign(t.Context(), token.EventToken, map[string]any{"iss": issuer, "jti": "revocation-1"})
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	if h := decodeSegment(t, jws, 0); h["typ"] != "secevent+jwt" || h["kid"] != kid || kid != e.hsmKey(t).KID() {
		t.Fatalf("header %v, kid %q", h, kid)
	}
	obj, err := jose.ParseSignedCompact(jws, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := e.keys.Lookup(kid)
	if payload, err := obj.Verify(pub.Key); err != nil || !strings.Contains(string(payload), "revocation-1") {
		t.Fatalf("signature does not verify with the published key: %s, %v", payload, err)
	}
	if _, _, err := e.keys.Sign(t.Context(), "JWT", map[string]any{}); err == nil {
		t.Fatal("signed a typ the key set does not sign")
	}
	e.clock.Advance(5*time.Minute + time.Second)
	if _, _, err := e.keys.Sign(t.Context(), token.EventToken, map[string]any{}); !errors.Is(err, signer.ErrStale) {
		t.Fatalf("Sign on a stale key set: %v, want ErrStale", err)
	}
}
