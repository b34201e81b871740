package signer

import (
	"crypto"
	"crypto/sha256"

	lru "github.com/hashicorp/golang-lru/v2"
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
// and key.
type verified struct {
	iss, kid, alg string
	key           crypto.PublicKey
}

func newSigCache(size int) *sigCache {
	c, err := lru.New[[sha256.Size]byte, verified](size)
	if err != nil {
		panic(err) // only for a size below 1
	}
	return &sigCache{c: c}
}

// hit reports whether the token with digest d verified before under the
// same issuer, kid and algorithm, with a key equal to key.
func (s *sigCache) hit(d [sha256.Size]byte, want verified) bool {
	v, ok := s.c.Get(d)
	if !ok || v.iss != want.iss || v.kid != want.kid || v.alg != want.alg {
		return false
	}
	k, ok := v.key.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(want.key)
}

// add records that the token with digest d verified with v.
func (s *sigCache) add(d [sha256.Size]byte, v verified) { s.c.Add(d, v) }

// len is how many signatures are cached.
func (s *sigCache) len() int { return s.c.Len() }
