package client

import (
	"context"
	"crypto/tls"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sigil-dev/sigil/verify"
)

// revocations is the client's follower of sigild's revocation feed: one
// verify.Verifier (VerifyConfig), shared by the TLS configs, which refuse
// a revoked peer certificate, and by Verifier's callers.
type revocations struct {
	mu       sync.Mutex // held while the Verifier is made
	v        atomic.Pointer[verify.Verifier]
	starting sync.Once
	since    atomic.Int64 // unix nanoseconds the TLS configs first needed it
}

// Verifier is the workload's verify.Verifier (VerifyConfig): tokens for
// this workload, with the revocation feed. It is made once, on the first
// call that succeeds, shared with the client's TLS configs, and closed by
// Close.
func (c *Client) Verifier(ctx context.Context) (*verify.Verifier, error) {
	if v := c.revs.v.Load(); v != nil {
		return v, nil
	}
	c.revs.mu.Lock()
	defer c.revs.mu.Unlock()
	if v := c.revs.v.Load(); v != nil {
		return v, nil
	}
	cfg, err := c.VerifyConfig(ctx)
	if err != nil {
		return nil, err
	}
	v, err := verify.New(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("client: verifier: %w", err)
	}
	c.revs.v.Store(v)
	return v, nil
}

// followRevocations makes the Verifier in the background, retrying, the
// first time a TLS config needs it.
func (c *Client) followRevocations() {
	c.revs.starting.Do(func() {
		c.revs.since.Store(time.Now().UnixNano())
		go func() {
			backoff := minBackoff
			for c.ctx.Err() == nil {
				ctx, cancel := context.WithTimeout(c.ctx, renewTimeout)
				_, err := c.Verifier(ctx)
				cancel()
				if err == nil {
					return
				}
				c.log.Warn("revocation feed: cannot follow it yet", "err", err, "retry_in", backoff)
				select {
				case <-c.ctx.Done():
					return
				case <-time.After(backoff/2 + rand.N(backoff/2+1)):
				}
				backoff = min(2*backoff, maxBackoff)
			}
		}()
	})
}

// verifyConnection refuses a peer whose certificate the revocation feed
// has revoked (verify.Verifier.VerifyConnection), on every handshake,
// resumed ones included. Until the feed is followed, peers are accepted
// for verify.DefaultStaleness from when a TLS config first needed it, then
// refused, as while the feed is down.
func (c *Client) verifyConnection(cs tls.ConnectionState) error {
	if v := c.revs.v.Load(); v != nil {
		return v.VerifyConnection(cs)
	}
	if time.Since(time.Unix(0, c.revs.since.Load())) > verify.DefaultStaleness {
		return fmt.Errorf("client: peer certificate: %w: the revocation feed cannot be followed", verify.ErrRevocationUnknown)
	}
	return nil
}

// withRevocation has cfg refuse revoked peer certificates.
func (c *Client) withRevocation(cfg *tls.Config) *tls.Config {
	c.followRevocations()
	cfg.VerifyConnection = c.verifyConnection
	return cfg
}

// closeRevocations stops following the feed.
func (c *Client) closeRevocations() {
	c.revs.mu.Lock()
	defer c.revs.mu.Unlock()
	if v := c.revs.v.Load(); v != nil {
		v.Close()
	}
}
