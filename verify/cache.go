package verify

import "sync"

// maxCachedHeaders bounds the header cache: an issuer has a few keys and
// token types, hence a few distinct protected headers.
const maxCachedHeaders = 64

// headerCache remembers the parsed protected headers of tokens whose
// signature verified, by their base64url text, so that the tokens of one
// key do not parse the same header again. Only headers that passed every
// check enter it.
type headerCache struct {
	mu sync.RWMutex
	m  map[string]header
}

func (c *headerCache) get(seg string) (header, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	h, ok := c.m[seg]
	return h, ok
}

func (c *headerCache) put(seg string, h header) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]header{}
	}
	if len(c.m) >= maxCachedHeaders {
		clear(c.m)
	}
	c.m[seg] = h
}
