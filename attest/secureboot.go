package attest

import (
	"crypto/sha256"
	"encoding/binary"
	"hash"

	"github.com/google/go-attestation/attest"
	lru "github.com/hashicorp/golang-lru/v2"
)

// secureBootCacheSize bounds the Secure Boot verdicts a Verifier keeps:
// one per distinct boot (event log and quoted PCRs) seen recently.
const secureBootCacheSize = 1024

// secureBootCache keeps go-attestation's Secure Boot verdict for the
// events that replayed, keyed by the SHA-256 of exactly what
// ParseSecurebootState reads of them (each event's PCR, type, data and
// digest, in order). The verdict is a pure function of those events, and
// parsing them (the UEFI variables and their certificate lists, again for
// every renewal of every workload on a host that booted once) costs more
// than the rest of the replay; hashing them costs a fraction of that.
// The replay itself, against the quoted PCRs, is not cached. A nil cache
// parses every time. Safe for concurrent use.
type secureBootCache struct {
	c *lru.Cache[[sha256.Size]byte, bool]
}

func newSecureBootCache(size int) *secureBootCache {
	c, err := lru.New[[sha256.Size]byte, bool](size)
	if err != nil {
		panic(err) // only for a size < 1
	}
	return &secureBootCache{c: c}
}

// enabled reports whether events, verified by replay, show UEFI Secure
// Boot on: false also when go-attestation cannot tell.
func (s *secureBootCache) enabled(events []attest.Event) bool {
	if s == nil {
		return parseSecureBoot(events)
	}
	key := eventsKey(events)
	if on, ok := s.c.Get(key); ok {
		return on
	}
	on := parseSecureBoot(events)
	s.c.Add(key, on)
	return on
}

func parseSecureBoot(events []attest.Event) bool {
	sb, err := attest.ParseSecurebootState(events)
	return err == nil && sb.Enabled
}

// eventsKey is the SHA-256 of a length-prefixed encoding of every field
// ParseSecurebootState reads of events (the order they come in included),
// so that no two different lists share a key.
func eventsKey(events []attest.Event) [sha256.Size]byte {
	h := sha256.New()
	var n [8]byte
	put := func(h hash.Hash, v uint64) {
		binary.BigEndian.PutUint64(n[:], v)
		h.Write(n[:])
	}
	put(h, uint64(len(events)))
	for _, e := range events {
		put(h, uint64(e.Index))
		put(h, uint64(e.Type))
		put(h, uint64(len(e.Data)))
		h.Write(e.Data)
		put(h, uint64(len(e.Digest)))
		h.Write(e.Digest)
	}
	var key [sha256.Size]byte
	h.Sum(key[:0])
	return key
}
