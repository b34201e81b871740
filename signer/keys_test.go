package signer_test

import (
	"crypto"
	"encoding/base64"
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/sigil-dev/sigil/hsm"
	"github.com/sigil-dev/sigil/internal/hsmkeys"
	"github.com/sigil-dev/sigil/signer"
	"github.com/sigil-dev/sigil/token"
)

// jwksKIDs returns the kids in the KeySet's JWKS.
func jwksKIDs(t testing.TB, ks *signer.KeySet) []string {
	t.Helper()
	b, err := ks.JWKS()
	if err != nil {
		t.Fatalf("JWKS: %v", err)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(b, &set); err != nil {
		t.Fatalf("JWKS: %v", err)
	}
	var kids []string
	for _, k := range set.Keys {
		kids = append(kids, k.KeyID)
	}
	return kids
}

func stateOf(t testing.TB, ks *signer.KeySet, kid string) signer.KeyState {
	t.Helper()
	for _, s := range ks.Status() {
		if s.KID == kid {
			return s
		}
	}
	t.Fatalf("key %s not in the key set", kid)
	return signer.KeyState{}
}

// TestRotation drives a full rotation: tokens signed before, during and
// after it all verify; the new key is in JWKS before it signs; the old one
// leaves only when every token it signed has expired.
func TestRotation(t *testing.T) {
	const lead, retain = 10 * time.Minute, time.Hour
	e := newEnv(t, hsm.ES256, signer.WithLead(lead), signer.WithRetain(retain))
	mint := func() (string, *token.Claims) {
		return e.accessToken(t, token.Claims{Subject: callerA.ID, Audience: []string{callerB.ID}}, retain)
	}
	kidOf := func(tok string) string { return decodeSegment(t, tok, 0)["kid"].(string) }
	v1 := e.hsmKey(t).KID()
	before, _ := mint()

	e.clock.Advance(time.Minute)
	rotated := e.clock.Now()
	st, err := e.keys.Rotate(t.Context())
	if err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	v2 := st.KID
	if !st.Active.Equal(rotated.Add(lead)) || !st.Seen.Equal(rotated) {
		t.Fatalf("new key seen %v active %v, want %v and %v", st.Seen, st.Active, rotated, rotated.Add(lead))
	}
	if got := jwksKIDs(t, e.keys); !reflect.DeepEqual(got, []string{v1, v2}) {
		t.Fatalf("JWKS right after rotation = %v, want both %v", got, []string{v1, v2})
	}
	during, _ := mint()
	e.clock.Advance(lead - time.Second)
	e.refresh(t)
	lastOld, lastOldClaims := mint()
	if kidOf(during) != v1 || kidOf(lastOld) != v1 {
		t.Fatal("the new key signed before its lead time")
	}

	e.clock.Advance(time.Second)
	e.refresh(t)
	after, _ := mint()
	if kidOf(after) != v2 {
		t.Fatalf("after the lead time, signed with %s, want the new key %s", kidOf(after), v2)
	}
	for name, tok := range map[string]string{"before": before, "during": during, "last of old key": lastOld, "after": after} {
		if _, err := e.verify.Verify(t.Context(), tok, callerB.ID); err != nil {
			t.Errorf("token signed %s the rotation: %v", name, err)
		}
	}

	old := stateOf(t, e.keys, v1)
	if !old.Retired.Equal(st.Active) || !old.Withdrawn.Equal(st.Active.Add(retain+signer.DefaultLeeway)) {
		t.Fatalf("old key retired %v withdrawn %v", old.Retired, old.Withdrawn)
	}
	if !lastOldClaims.Expiry.Add(signer.DefaultLeeway).Before(old.Withdrawn) {
		t.Fatalf("a token of the old key (exp %v) outlives its publication (%v)", lastOldClaims.Expiry, old.Withdrawn)
	}
	checkWithdrawal(t, e, old, v2)
}

// checkWithdrawal checks the old key stays in JWKS until Withdrawn, and
// only the new one after.
func checkWithdrawal(t *testing.T, e *env, old signer.KeyState, v2 string) {
	v1 := old.KID
	e.clock.Advance(old.Withdrawn.Sub(e.clock.Now()) - time.Second)
	e.refresh(t)
	if got := jwksKIDs(t, e.keys); !slices.Contains(got, v1) {
		t.Fatalf("old key left JWKS before Retain: %v", got)
	}
	e.clock.Advance(time.Second)
	e.refresh(t)
	if got := jwksKIDs(t, e.keys); !reflect.DeepEqual(got, []string{v2}) {
		t.Fatalf("JWKS after Retain = %v, want only %v", got, v2)
	}
	if _, ok := e.keys.Lookup(v1); ok {
		t.Fatal("withdrawn key still resolves")
	}
}

// TestReplicasAgree: two KeySets sharing a SeenStore, refreshing at
// different times, compute the same schedule and JWKS.
func TestReplicasAgree(t *testing.T) {
	e := newEnv(t, hsm.ES384)
	seen := &signer.MemorySeen{}
	replica := func() *signer.KeySet {
		ks, err := signer.NewKeySet(hsmkeys.New(e.h), "jwt", seen, signer.WithClock(e.clock.Now))
		if err != nil {
			t.Fatal(err)
		}
		if err := ks.Refresh(t.Context()); err != nil {
			t.Fatal(err)
		}
		return ks
	}
	a := replica()
	if _, err := a.Rotate(t.Context()); err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	e.clock.Advance(3 * time.Minute)
	b := replica()
	if !reflect.DeepEqual(a.Status(), b.Status()) {
		t.Fatalf("replicas disagree:\n a %+v\n b %+v", a.Status(), b.Status())
	}
	ja, _ := a.JWKS()
	jb, _ := b.JWKS()
	if string(ja) != string(jb) {
		t.Fatalf("JWKS differ:\n%s\n%s", ja, jb)
	}
}

func TestStaleKeySetRefusesToSign(t *testing.T) {
	e := newEnv(t, hsm.ES256, signer.WithLead(5*time.Minute))
	e.clock.Advance(5*time.Minute + time.Second)
	c := token.Claims{Subject: callerA.ID, Audience: []string{callerB.ID}, Expiry: e.clock.Now().Add(time.Minute)}
	if _, err := e.mint.AccessToken(t.Context(), c); !errors.Is(err, signer.ErrStale) {
		t.Fatalf("AccessToken on a stale key set: %v, want ErrStale", err)
	}
	e.refresh(t)
	if _, err := e.mint.AccessToken(t.Context(), c); err != nil {
		t.Fatalf("AccessToken after Refresh: %v", err)
	}
}

func TestKeySetWithoutKey(t *testing.T) {
	e := newEnv(t, hsm.ES256)
	ks, err := signer.NewKeySet(hsmkeys.New(e.h), "other", &signer.MemorySeen{})
	if err != nil {
		t.Fatal(err)
	}
	if err := ks.Refresh(t.Context()); err == nil {
		t.Fatal("Refresh found a key that is not on the token")
	}
	m, _ := signer.NewMinter(issuer, ks)
	if _, err := m.AccessToken(t.Context(), token.Claims{Subject: callerA.ID, Audience: []string{"a"}, Expiry: time.Now().Add(time.Minute)}); err == nil {
		t.Fatal("minted without a key")
	}
}

// TestJWKS checks the published set holds public keys only, with kid
// (the RFC 7638 thumbprint), alg and use.
func TestJWKS(t *testing.T) {
	for _, alg := range []hsm.Alg{hsm.ES256, hsm.PS256} {
		t.Run(string(alg), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, alg)
			b, err := e.keys.JWKS()
			if err != nil {
				t.Fatal(err)
			}
			var raw struct{ Keys []map[string]any }
			if err := json.Unmarshal(b, &raw); err != nil || len(raw.Keys) != 1 {
				t.Fatalf("JWKS %s: %v", b, err)
			}
			k := raw.Keys[0]
			key := e.hsmKey(t)
			for _, private := range []string{"d", "p", "q", "dp", "dq", "qi"} {
				if _, ok := k[private]; ok {
					t.Fatalf("JWKS carries private member %q", private)
				}
			}
			if k["kid"] != key.KID() || k["alg"] != string(alg) || k["use"] != "sig" {
				t.Fatalf("JWKS key %v", k)
			}
			tp, _ := (&jose.JSONWebKey{Key: key.Public()}).Thumbprint(crypto.SHA256)
			if k["kid"] != base64.RawURLEncoding.EncodeToString(tp) {
				t.Fatal("kid is not the RFC 7638 thumbprint")
			}
		})
	}
}
