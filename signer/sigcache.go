package signer

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/sha256"
	"slices"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/sigil-dev/sigil/token"
)

// maxCachedSignatures bounds a Verifier's cache of verified signatures: the
// distinct tokens presented again within their lifetime (a workload
// exchanges its user's token for each downstream call). About 150 bytes an
// entry.
const maxCachedSignatures = 4096

// sigCache remembers which tokens' signatures verified, and with which key,
// so that a token presented again costs a hash instead of a signature
// check. It caches nothing but that fact: the caller still resolves the
// token's key from its issuer on every call (a withdrawn key, or a kid now
// bound to another key, makes the entry useless, since a hit needs the key
// resolved now to equal the one that verified), and still checks alg, typ,
// times, audience and everything else on every call. An entry is keyed by
// the SHA-256 of the whole compact token as presented, so a token differing
// in any byte, of its signature too, is another entry, and only a
// signature that verified enters. It is bounded (least recently used out),
// so a flood of distinct tokens evicts entries and grows nothing.
type sigCache struct {
	c *lru.Cache[[sha256.Size]byte, verified]
}

// verified is what a signature verified with: its issuer, kid, algorithm
// and key; and for an external issuer's token, once decoded, its claims.
// Those depend only on the token's bytes and the issuer's configuration,
// and hold only strings, times and string slices (no act, cnf or
// transaction context), so a copy (externalCopy) shares nothing with the
// caller's.
type verified struct {
	iss, kid, alg string
	key           crypto.PublicKey
	claims        *token.Claims
}

// claimsCopy is a copy of the cached claims, nil if none.
func (v verified) claimsCopy() *token.Claims {
	if v.claims == nil {
		return nil
	}
	return externalCopy(v.claims)
}

// externalCopy copies the claims of an external issuer's token: the
// struct and its two slices.
func externalCopy(c *token.Claims) *token.Claims {
	cp := *c
	cp.Audience, cp.Scope = slices.Clone(c.Audience), slices.Clone(c.Scope)
	return &cp
}

func newSigCache(size int) *sigCache {
	c, err := lru.New[[sha256.Size]byte, verified](size)
	if err != nil {
		panic(err) // only for a size below 1
	}
	return &sigCache{c: c}
}

// get returns what the token with digest d verified with, if it verified
// before under the same issuer, kid and algorithm as want, with a key
// equal to want's.
func (s *sigCache) get(d [sha256.Size]byte, want verified) (verified, bool) {
	v, ok := s.c.Get(d)
	if !ok || v.iss != want.iss || v.kid != want.kid || v.alg != want.alg {
		return verified{}, false
	}
	if !sameKey(v.key, want.key) {
		return verified{}, false
	}
	return v, true
}

// sameKey reports whether a and b are equal public keys. The issuer's key
// set usually resolves the same *ecdsa.PublicKey object on every call,
// which is equal without the value comparison: ecdsa's Equal copies both
// points out of their big.Ints, four allocations per presented token.
func sameKey(a, b crypto.PublicKey) bool {
	if pa, ok := a.(*ecdsa.PublicKey); ok && pa != nil {
		if pb, ok := b.(*ecdsa.PublicKey); ok && pa == pb {
			return true
		}
	}
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}

// peek returns what the token with digest d verified with, if it did,
// leaving the entry's recency alone; get, which checks it against the key
// resolved now, is what admits the signature.
func (s *sigCache) peek(d [sha256.Size]byte) (verified, bool) { return s.c.Peek(d) }

// add records that the token with digest d verified with v.
func (s *sigCache) add(d [sha256.Size]byte, v verified) { s.c.Add(d, v) }

// len is how many signatures are cached.
func (s *sigCache) len() int { return s.c.Len() }
