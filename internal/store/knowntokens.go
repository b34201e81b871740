package store

import (
	"sync"
	"time"
)

// maxKnownTokens bounds KnownTokens: about 100 bytes an entry.
const maxKnownTokens = 4096

// KnownTokens remembers the external tokens whose records a store has
// committed, so that RecordToken can leave out the INSERT … ON CONFLICT DO
// NOTHING of one that is presented again (every exchange of an IdP's token
// after its first). It is a hint, never evidence: the record may have been
// purged since, by this process or another (a replica, an operator), so a
// RecordToken that left the insert out and finds the token's parent missing
// (ErrNotFound) stores the external token after all and tries again. A
// revoked external token stays refused: its record is still there, and
// InsertToken checks its parent's revocation whether or not the insert ran.
// The zero value is ready; it is safe for concurrent use.
type KnownTokens struct {
	mu sync.Mutex
	m  map[string]time.Time // jti → expiry
}

// Known reports whether the record of the external token jti was
// committed by this store, as far as k remembers.
func (k *KnownTokens) Known(jti string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	_, ok := k.m[jti]
	return ok
}

// Add remembers t, an external token whose record is committed. When k is
// full it forgets the expired tokens, and all of them if none has expired.
func (k *KnownTokens) Add(t Token) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, ok := k.m[t.JTI]; ok {
		return
	}
	if k.m == nil {
		k.m = make(map[string]time.Time)
	}
	if len(k.m) >= maxKnownTokens {
		now := time.Now()
		for jti, exp := range k.m {
			if exp.Before(now) {
				delete(k.m, jti)
			}
		}
		if len(k.m) >= maxKnownTokens {
			clear(k.m)
		}
	}
	k.m[t.JTI] = t.ExpiresAt
}

// Forget forgets jti: its record was found missing.
func (k *KnownTokens) Forget(jti string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.m, jti)
}
