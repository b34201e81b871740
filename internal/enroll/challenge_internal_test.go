package enroll

import (
	"bytes"
	"encoding/base64"
	"testing"
	"time"
)

// TestRenewChallengeMAC: the MAC binds the challenge to its device, its
// certificate and every field; a wrong key, a flipped bit anywhere or a
// truncation is refused.
func TestRenewChallengeMAC(t *testing.T) {
	t.Parallel()
	key := bytes.Repeat([]byte{7}, challengeKeySize)
	exp := time.Now().Add(time.Minute)
	c := newRenewChallenge(key, "ek1", "serial1", exp)
	p, err := parseRenewChallenge(c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !p.verify(key, "ek1", "serial1") || !p.ExpiresAt.Equal(exp.Truncate(time.Microsecond)) {
		t.Fatalf("round trip: verify false or expiry %v, want %v", p.ExpiresAt, exp)
	}
	if !bytes.Equal(p.Nonce(), c.Nonce()) || bytes.Equal(c.Nonce(), newRenewChallenge(key, "ek1", "serial1", exp).Nonce()) {
		t.Error("nonce not a function of the challenge alone")
	}
	for _, bad := range []struct{ key, ek, serial string }{
		{string(key), "ek2", "serial1"}, {string(key), "ek1", "serial2"}, {string(key), "ek1s", "erial1"},
		{string(bytes.Repeat([]byte{8}, challengeKeySize)), "ek1", "serial1"},
	} {
		if p.verify([]byte(bad.key), bad.ek, bad.serial) {
			t.Errorf("verified for EK %q, serial %q", bad.ek, bad.serial)
		}
	}
	for i := range renewChallengeSize * 8 {
		raw := p.raw
		raw[i/8] ^= 1 << (i % 8)
		q, err := parseRenewChallenge(base64.RawURLEncoding.EncodeToString(raw[:]))
		if err == nil && q.verify(key, "ek1", "serial1") {
			t.Fatalf("bit %d flipped, still verifies", i)
		}
	}
	for n := range len(c.ID) {
		if _, err := parseRenewChallenge(c.ID[:n]); err == nil {
			t.Fatalf("truncated to %d characters, parsed", n)
		}
	}
}

// FuzzParseRenewChallenge: any input parses to a challenge that encodes
// back to it, or is refused; none verifies without the key's MAC.
func FuzzParseRenewChallenge(f *testing.F) {
	key := bytes.Repeat([]byte{7}, challengeKeySize)
	f.Add(newRenewChallenge(key, "ek", "serial", time.Now()).ID)
	f.Add("")
	f.Add("00112233445566778899aabbccddeeff")
	f.Add(string(bytes.Repeat([]byte{'A'}, 55)))
	f.Fuzz(func(t *testing.T, id string) {
		c, err := parseRenewChallenge(id)
		if err != nil {
			return
		}
		if got := base64.RawURLEncoding.EncodeToString(c.raw[:]); got != id || c.ID != id {
			t.Fatalf("parsed %q, encodes to %q", id, got)
		}
		if c.verify(key, "ek", "serial") && id != newRenewChallengeFrom(key, c).ID {
			t.Fatalf("%q verifies but was not MAC'd with the key", id)
		}
	})
}

// newRenewChallengeFrom re-MACs c's fields with key, as newRenewChallenge
// would have.
func newRenewChallengeFrom(key []byte, c renewChallenge) renewChallenge {
	copy(c.raw[renewChallengeSize-renewMACSize:], c.mac(key, "ek", "serial"))
	c.ID = base64.RawURLEncoding.EncodeToString(c.raw[:])
	return c
}

// TestRenewChallengeExpiryBounded: a challenge claiming a later expiry than
// any this service issues (made with a leaked key) is refused, whatever its
// MAC says.
func TestRenewChallengeExpiryBounded(t *testing.T) {
	t.Parallel()
	key := bytes.Repeat([]byte{7}, challengeKeySize)
	now, ttl := time.Now(), 5*time.Minute
	for _, tc := range []struct {
		expires time.Time
		ok      bool
	}{
		{now.Add(ttl), true},
		{now.Add(ttl + maxChallengeSkew), true},
		{now.Add(ttl + maxChallengeSkew + time.Second), false},
		{now.Add(24 * time.Hour), false},
	} {
		c := newRenewChallenge(key, "ek1", "serial1", tc.expires)
		if got := c.expiresWithin(now, ttl); got != tc.ok {
			t.Errorf("expiry now+%v: within = %v, want %v", tc.expires.Sub(now), got, tc.ok)
		}
	}
}
