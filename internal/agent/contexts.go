package agent

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"sync"
	"time"
)

// maxContexts bounds the incoming tokens the agent remembers for egress.
const maxContexts = 10000

// contexts remembers the tokens the ingress verified, under a handle the
// service gets in X-Sigil-Context and forwards on an egress call made on
// the caller's behalf, so the token itself never goes to the service. A
// handle is an HMAC of the token under a key of this process: the same
// token gets the same handle, and a handle says nothing of its token.
type contexts struct {
	key [32]byte
	mu  sync.Mutex
	m   map[string]contextEntry
	now func() time.Time
}

// contextEntry is a verified incoming access token and the transaction
// token that came with it, if any.
type contextEntry struct {
	token, txn string
	expiresAt  time.Time
}

func newContexts() *contexts {
	cs := &contexts{m: make(map[string]contextEntry), now: time.Now}
	rand.Read(cs.key[:])
	return cs
}

// put remembers token, and txn if not empty, until expiresAt and returns
// their handle.
func (cs *contexts) put(token, txn string, expiresAt time.Time) string {
	mac := hmac.New(sha256.New, cs.key[:])
	mac.Write([]byte(token))
	mac.Write([]byte{0}) // a JWT holds no zero byte: no two pairs write the same bytes
	mac.Write([]byte(txn))
	h := base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if _, ok := cs.m[h]; !ok && len(cs.m) >= maxContexts {
		cs.sweep()
	}
	cs.m[h] = contextEntry{token: token, txn: txn, expiresAt: expiresAt}
	return h
}

// sweep drops expired entries and, if still full, arbitrary ones.
func (cs *contexts) sweep() {
	now := cs.now()
	for h, e := range cs.m {
		if !now.Before(e.expiresAt) {
			delete(cs.m, h)
		}
	}
	for h := range cs.m {
		if len(cs.m) < maxContexts {
			break
		}
		delete(cs.m, h)
	}
}

// get returns the unexpired entry of handle h.
func (cs *contexts) get(h string) (contextEntry, bool) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	e, ok := cs.m[h]
	if ok && !cs.now().Before(e.expiresAt) {
		delete(cs.m, h)
		return contextEntry{}, false
	}
	return e, ok
}
