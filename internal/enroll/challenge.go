package enroll

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"time"

	"github.com/sigil-dev/sigil/attest"
)

// A renewal challenge is stateless: its ID is
//
//	base64url(version ‖ expiry ‖ random ‖ mac)
//
// with version one byte, expiry the Unix time in microseconds (8 bytes, big
// endian), random 16 bytes and mac the first 16 bytes of
// HMAC-SHA256(key, label ‖ version ‖ expiry ‖ random ‖ EK hash ‖ serial):
// it is bound to the device and the certificate it was issued to without
// carrying them (the renewal names both by its TLS client certificate), so
// it stays within the 64 characters a challenge ID may have. The nonce the
// TPM quotes over is SHA-256 of a label and the ID, so the quote is bound to
// the challenge. Nothing is stored when it is issued; its single use is a
// used_challenges row written in the renewal's own transaction.
const (
	renewChallengeVersion = 1
	renewRandomSize       = 16
	renewMACSize          = 16
	renewChallengeSize    = 1 + 8 + renewRandomSize + renewMACSize
	renewMACLabel         = "sigil renewal challenge\x00"
	renewNonceLabel       = "sigil renewal nonce\x00"
)

// renewChallenge is a parsed renewal challenge.
type renewChallenge struct {
	ID        string
	ExpiresAt time.Time
	raw       [renewChallengeSize]byte
}

// Nonce is what the TPM quotes over for this challenge.
func (c renewChallenge) Nonce() []byte {
	h := sha256.New()
	h.Write([]byte(renewNonceLabel))
	h.Write(c.raw[:])
	n := h.Sum(nil)
	return n[:attest.NonceSize]
}

// mac is the MAC of the challenge's first fields for the device ekHash and
// the certificate serial.
func (c renewChallenge) mac(key []byte, ekHash, serial string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(renewMACLabel))
	m.Write(c.raw[:renewChallengeSize-renewMACSize])
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(ekHash)))
	m.Write(n[:])
	m.Write([]byte(ekHash))
	m.Write([]byte(serial))
	return m.Sum(nil)[:renewMACSize]
}

// newRenewChallenge issues a challenge for the certificate serial of device
// ekHash, valid until expires.
func newRenewChallenge(key []byte, ekHash, serial string, expires time.Time) renewChallenge {
	var c renewChallenge
	c.raw[0] = renewChallengeVersion
	binary.BigEndian.PutUint64(c.raw[1:9], uint64(expires.UnixMicro()))
	_, _ = rand.Read(c.raw[9 : 9+renewRandomSize]) // crypto/rand.Read never fails
	copy(c.raw[9+renewRandomSize:], c.mac(key, ekHash, serial))
	c.ID = base64.RawURLEncoding.EncodeToString(c.raw[:])
	c.ExpiresAt = time.UnixMicro(int64(binary.BigEndian.Uint64(c.raw[1:9])))
	return c
}

// errChallengeForm: the ID is not a renewal challenge's encoding.
var errChallengeForm = errors.New("not a renewal challenge")

// parseRenewChallenge decodes id without checking its MAC or expiry.
func parseRenewChallenge(id string) (renewChallenge, error) {
	var c renewChallenge
	if len(id) != base64.RawURLEncoding.EncodedLen(renewChallengeSize) {
		return c, fmt.Errorf("%w: %d characters, want %d", errChallengeForm, len(id), base64.RawURLEncoding.EncodedLen(renewChallengeSize))
	}
	n, err := base64.RawURLEncoding.Strict().Decode(c.raw[:], []byte(id))
	if err != nil || n != renewChallengeSize {
		return c, fmt.Errorf("%w: bad encoding", errChallengeForm)
	}
	if c.raw[0] != renewChallengeVersion {
		return c, fmt.Errorf("%w: version %d", errChallengeForm, c.raw[0])
	}
	c.ID = id
	c.ExpiresAt = time.UnixMicro(int64(binary.BigEndian.Uint64(c.raw[1:9])))
	return c, nil
}

// verify checks that c was issued with key for the certificate serial of
// device ekHash.
func (c renewChallenge) verify(key []byte, ekHash, serial string) bool {
	return hmac.Equal(c.raw[renewChallengeSize-renewMACSize:], c.mac(key, ekHash, serial))
}

// challengeKeySize is the size of a generated key.
const challengeKeySize = 32

// keyStore holds the shared challenge key; store.Store is one.
type keyStore interface {
	ChallengeKey(ctx context.Context, candidate []byte) ([]byte, error)
}

// challengeKeyCache maps each store a Service used to its challenge key:
// the key never changes once stored, and Services are copied by value (a
// replica is a copy with another Store), so the cache is not a field.
var challengeKeyCache sync.Map

// challengeKey returns the key every replica on st shares, storing a new
// one if the store holds none: concurrent first calls all read back the
// one that was stored first.
func challengeKey(ctx context.Context, st keyStore) ([]byte, error) {
	cacheable := reflect.TypeOf(st).Comparable()
	if cacheable {
		if k, ok := challengeKeyCache.Load(st); ok {
			return k.([]byte), nil
		}
	}
	candidate := make([]byte, challengeKeySize)
	_, _ = rand.Read(candidate) // crypto/rand.Read never fails
	key, err := st.ChallengeKey(ctx, candidate)
	if err != nil {
		return nil, fmt.Errorf("enroll: challenge key: %w", err)
	}
	if len(key) < challengeKeySize {
		return nil, fmt.Errorf("enroll: stored challenge key is %d bytes, want at least %d", len(key), challengeKeySize)
	}
	if cacheable {
		challengeKeyCache.Store(st, key)
	}
	return key, nil
}

// maxChallengeSkew is how far another replica's clock may run ahead of
// this one's when it issues a challenge.
const maxChallengeSkew = time.Minute

// expiresWithin reports whether c expires no later than a challenge issued
// now with ttl would (give or take maxChallengeSkew). Every challenge
// issued here does; one that claims a later expiry was made by someone
// else holding the key, and must not buy a quote that stays usable longer.
func (c renewChallenge) expiresWithin(now time.Time, ttl time.Duration) bool {
	return !c.ExpiresAt.After(now.Add(ttl + maxChallengeSkew))
}
