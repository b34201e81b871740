package token

import "sync"

// maxCachedHeaders bounds a HeaderCache: an issuer has a few keys and token
// types, hence a few distinct protected headers.
const maxCachedHeaders = 64

// A HeaderCache remembers the parsed protected headers of tokens whose
// signature verified, by their base64url text, so that the tokens of one
// key do not parse the same header again. Only headers that passed every
// check may enter it, so it holds no header an attacker chose without a
// trusted key. The zero value is ready to use; it is safe for concurrent use.
type HeaderCache[H any] struct {
	mu sync.RWMutex
	m  map[string]H
}

// Get returns the header cached for the encoded segment.
func (c *HeaderCache[H]) Get(segment string) (H, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	h, ok := c.m[segment]
	return h, ok
}

// Put caches h, which verified, under its encoded segment. A full cache
// starts over rather than tracking use.
func (c *HeaderCache[H]) Put(segment string, h H) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]H{}
	}
	if len(c.m) >= maxCachedHeaders {
		clear(c.m)
	}
	c.m[segment] = h
}
