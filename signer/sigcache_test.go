package signer_test

import (
	"crypto/elliptic"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/signer"
)

// cacheKit is a verifier of one ES256 key whose key set, clock and
// signature cache the test controls.
func cacheKit(t *testing.T, cacheSize int) (*signer.Verifier, *kit, staticKeys, *atomic.Int64, func() int) {
	t.Helper()
	const kid = "cache-key"
	key := newECKey(t, elliptic.P256())
	keys := staticKeys{kid: {KID: kid, Alg: "ES256", Key: key.Public()}}
	var offset atomic.Int64 // added to t0
	now := func() time.Time { return t0.Add(time.Duration(offset.Load())) }
	v, err := signer.NewVerifier(issuer, keys, signer.WithClock(now))
	if err != nil {
		t.Fatal(err)
	}
	size := signer.SetSignatureCacheSize(v, cacheSize)
	return v, newKit(t, t0, key, "ES256", kid), keys, &offset, size
}

// TestSignatureCacheWithdrawnKey: a token whose signature verified, and so
// is cached, is refused once its key is withdrawn, and once its kid names
// another key.
func TestSignatureCacheWithdrawnKey(t *testing.T) {
	t.Parallel()
	v, k, keys, _, size := cacheKit(t, 16)
	tok := k.good()
	for range 2 { // the second is a cache hit
		if _, err := v.Verify(t.Context(), tok, callerB.ID); err != nil {
			t.Fatalf("Verify: %v", err)
		}
	}
	if size() != 1 {
		t.Fatalf("%d signatures cached, want 1", size())
	}
	good := keys[k.kid]
	keys[k.kid] = signer.PublicKey{KID: k.kid, Alg: "ES256", Key: k.attacker.Public()}
	if _, err := v.Verify(t.Context(), tok, callerB.ID); kindOf(t, err) != signer.ErrInvalid || !strings.Contains(err.Error(), "bad signature") {
		t.Fatalf("with the kid bound to another key: %v, want a bad signature", err)
	}
	delete(keys, k.kid)
	if _, err := v.Verify(t.Context(), tok, callerB.ID); kindOf(t, err) != signer.ErrInvalid || !strings.Contains(err.Error(), "unknown key id") {
		t.Fatalf("with the key withdrawn: %v, want an unknown key id", err)
	}
	keys[k.kid] = good
	if _, err := v.Verify(t.Context(), tok, callerB.ID); err != nil {
		t.Fatalf("with the key back: %v", err)
	}
}

// TestSignatureCacheFlippedSignature: once a token is cached, the same
// token with any one character of its signature changed is refused.
func TestSignatureCacheFlippedSignature(t *testing.T) {
	t.Parallel()
	v, k, _, _, _ := cacheKit(t, 16)
	tok := k.good()
	if _, err := v.Verify(t.Context(), tok, callerB.ID); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	sig := strings.LastIndexByte(tok, '.') + 1
	for i := sig; i < len(tok); i++ {
		for _, c := range []byte{'A', 'B', 'w', '_'} {
			if tok[i] == c {
				continue
			}
			bad := tok[:i] + string(c) + tok[i+1:]
			if _, err := v.Verify(t.Context(), bad, callerB.ID); err == nil {
				t.Fatalf("accepted the token with signature character %d changed to %q", i-sig, c)
			}
		}
	}
}

// TestSignatureCacheChecksEveryCall: a cached token is still checked for
// expiry and audience on every call.
func TestSignatureCacheChecksEveryCall(t *testing.T) {
	t.Parallel()
	v, k, _, offset, _ := cacheKit(t, 16)
	tok := k.good()
	if _, err := v.Verify(t.Context(), tok, callerB.ID); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if _, err := v.Verify(t.Context(), tok, callerA.ID); err == nil || !strings.Contains(err.Error(), "wrong audience") {
		t.Fatalf("cached token for another audience: %v, want wrong audience", err)
	}
	offset.Store(int64(time.Hour))
	if _, err := v.Verify(t.Context(), tok, callerB.ID); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("cached token past its expiry: %v, want expired", err)
	}
}

// TestSignatureCacheBounded: a flood of distinct valid tokens keeps the
// cache at its bound, and every token, evicted or not, still verifies.
func TestSignatureCacheBounded(t *testing.T) {
	t.Parallel()
	const bound = 8
	v, k, _, _, size := cacheKit(t, bound)
	var toks []string
	for i := range 5 * bound {
		toks = append(toks, k.sign(nil, map[string]any{"jti": fmt.Sprintf("flood-%d", i)}))
	}
	for _, tok := range append(toks, toks...) {
		if _, err := v.Verify(t.Context(), tok, callerB.ID); err != nil {
			t.Fatalf("Verify: %v", err)
		}
		if size() > bound {
			t.Fatalf("%d signatures cached, bound %d", size(), bound)
		}
	}
	if size() != bound {
		t.Fatalf("%d signatures cached, want %d", size(), bound)
	}
}

// TestSignatureCacheExternalClaims: an external token's claims, cached with
// its signature, come back as a copy the caller may change, and are still
// checked for expiry and audience on every call.
func TestSignatureCacheExternalClaims(t *testing.T) {
	t.Parallel()
	p := newIdP(t, t0)
	var offset atomic.Int64
	now := func() time.Time { return t0.Add(time.Duration(offset.Load())) }
	v, err := signer.NewVerifier(issuer, staticKeys{}, signer.WithClock(now), signer.WithExternalIssuers(p.issuer()))
	if err != nil {
		t.Fatal(err)
	}
	size := signer.SetSignatureCacheSize(v, 16)
	tok := p.token(nil, nil)
	first, err := v.Verify(t.Context(), tok, callerA.ID)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	first.Scope[0], first.Audience[0], first.Subject = "admin", callerB.ID, "mallory@example.com"
	second, err := v.Verify(t.Context(), tok, callerA.ID)
	switch {
	case err != nil:
		t.Fatalf("Verify again: %v", err)
	case size() != 1:
		t.Fatalf("%d signatures cached, want 1", size())
	case second.Subject != "alice@example.com" || second.Scope[0] != "read" || second.Audience[0] != callerA.ID:
		t.Fatalf("the second call saw the first caller's changes: %+v", second)
	}
	if _, err := v.Verify(t.Context(), tok, callerB.ID); err == nil {
		t.Fatal("cached external token accepted for another audience")
	}
	offset.Store(int64(time.Hour))
	if _, err := v.Verify(t.Context(), tok, callerA.ID); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("cached external token past its expiry: %v, want expired", err)
	}
}
