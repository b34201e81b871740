package verify

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sigil-dev/sigil/token"
)

// maxJWKSBytes bounds a JWKS document.
const maxJWKSBytes = 1 << 20

// keyCache holds the issuer's published keys by kid, each ready to verify
// its algorithm. An unknown kid makes it fetch the JWKS again, at most once
// per minRefresh.
type keyCache struct {
	fetch      func(context.Context) ([]byte, error)
	algs       []string
	minRefresh time.Duration
	now        func() time.Time

	keys atomic.Pointer[map[string]publicKey]

	mu      sync.Mutex // serialises fetches
	fetched time.Time  // last fetch attempt
}

// lookup returns the key kid for alg, fetching the JWKS again if kid is
// unknown and the last fetch is at least minRefresh ago.
func (c *keyCache) lookup(ctx context.Context, kid, alg string) (publicKey, error) {
	if k, ok := c.find(kid); ok {
		return checkAlg(k, alg)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if k, ok := c.find(kid); ok { // fetched while we waited
		return checkAlg(k, alg)
	}
	if c.now().Sub(c.fetched) < c.minRefresh {
		return publicKey{}, errUnknownKey
	}
	if err := c.refreshLocked(ctx); err != nil {
		return publicKey{}, fmt.Errorf("%w: %w", errUnknownKey, err)
	}
	if k, ok := c.find(kid); ok {
		return checkAlg(k, alg)
	}
	return publicKey{}, errUnknownKey
}

func checkAlg(k publicKey, alg string) (publicKey, error) {
	if k.alg != alg {
		return publicKey{}, errAlgorithm
	}
	return k, nil
}

func (c *keyCache) find(kid string) (publicKey, bool) {
	m := c.keys.Load()
	if m == nil {
		return publicKey{}, false
	}
	k, ok := (*m)[kid]
	return k, ok
}

// refresh fetches the JWKS now.
func (c *keyCache) refresh(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.refreshLocked(ctx)
}

func (c *keyCache) refreshLocked(ctx context.Context) error {
	c.fetched = c.now()
	b, err := c.fetch(ctx)
	if err != nil {
		return fmt.Errorf("verify: fetch JWKS: %w", err)
	}
	keys, err := parseJWKS(b, c.algs)
	if err != nil {
		return err
	}
	c.keys.Store(&keys)
	return nil
}

// parseJWKS keeps the public signing keys with a kid and an allowed alg
// that suits the key (token.ParseJWKS), each ready to verify that alg.
func parseJWKS(b []byte, algs []string) (map[string]publicKey, error) {
	set, err := token.ParseJWKS(b, algs)
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	keys := map[string]publicKey{}
	for kid, k := range set {
		if p, ok := newPublicKey(k); ok {
			keys[kid] = p
		}
	}
	if len(keys) == 0 {
		return nil, errors.New("verify: JWKS has no usable signing key")
	}
	return keys, nil
}

// httpFetch returns a fetch of url with client.
func httpFetch(client *http.Client, url string) func(context.Context) ([]byte, error) {
	return func(ctx context.Context) ([]byte, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Accept", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		b, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
		if err != nil {
			return nil, err
		}
		if len(b) > maxJWKSBytes {
			return nil, fmt.Errorf("GET %s: JWKS larger than %d bytes", url, maxJWKSBytes)
		}
		return b, nil
	}
}
