package tokens

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"sync"
	"time"

	"github.com/sigil-dev/sigil/attest"
	"github.com/sigil-dev/sigil/ca"
	"github.com/sigil-dev/sigil/internal/device"
	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/policy"
)

// maxCachedFacts bounds the device facts cache: one entry per client
// certificate in use.
const maxCachedFacts = 16384

// factsCache holds the policy facts of the device each client certificate
// was issued on. Deriving them re-verifies the recorded evidence (about a
// millisecond); they never change for a certificate, so they are kept until
// it expires. Concurrent first requests of one certificate derive once.
type factsCache struct {
	st     store.Reader
	verify *attest.Verifier
	now    func() time.Time
	max    int

	mu      sync.Mutex
	entries map[string]*factsEntry // by certificate serial
}

type factsEntry struct {
	ready   chan struct{} // closed once facts and err are set
	facts   policy.DeviceFacts
	err     error
	expires time.Time
}

func newFactsCache(st store.Reader, v *attest.Verifier, now func() time.Time, max int) *factsCache {
	return &factsCache{st: st, verify: v, now: now, max: max, entries: map[string]*factsEntry{}}
}

// get returns the facts of c's device. A failure is not cached.
func (fc *factsCache) get(ctx context.Context, c *client) (policy.DeviceFacts, error) {
	e, owner := fc.entry(c)
	if owner {
		// Others may wait for this entry: their requests must not fail
		// because this one was cancelled.
		e.facts, e.err = fc.derive(context.WithoutCancel(ctx), c)
		if e.err != nil {
			fc.forget(c.record.Serial, e)
		}
		close(e.ready)
	}
	select {
	case <-e.ready:
		return e.facts, e.err
	case <-ctx.Done():
		return policy.DeviceFacts{}, ctx.Err()
	}
}

// entry returns the cache entry of c's certificate, and whether the
// caller must fill it.
func (fc *factsCache) entry(c *client) (*factsEntry, bool) {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	if e, ok := fc.entries[c.record.Serial]; ok {
		return e, false
	}
	if len(fc.entries) >= fc.max {
		fc.evict()
	}
	e := &factsEntry{ready: make(chan struct{}), expires: c.record.NotAfter}
	fc.entries[c.record.Serial] = e
	return e, true
}

// evict drops the expired entries, or if none, an arbitrary tenth.
func (fc *factsCache) evict() {
	now := fc.now()
	for k, e := range fc.entries {
		if now.After(e.expires) {
			delete(fc.entries, k)
		}
	}
	for k := range fc.entries {
		if len(fc.entries) < fc.max*9/10 {
			return
		}
		delete(fc.entries, k)
	}
}

func (fc *factsCache) forget(serial string, e *factsEntry) {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	if fc.entries[serial] == e {
		delete(fc.entries, serial)
	}
}

// derive re-verifies the evidence the certificate was issued on
// (device.CertificateFacts). The certificate's evidence extension, signed
// by our CA, must name the same evidence as the record.
func (fc *factsCache) derive(ctx context.Context, c *client) (policy.DeviceFacts, error) {
	if err := checkExtension(c.cert, c.record); err != nil {
		return policy.DeviceFacts{}, err
	}
	facts, err := device.CertificateFacts(ctx, fc.st, fc.verify, c.record)
	if err != nil {
		return policy.DeviceFacts{}, fmt.Errorf("tokens: %w", err)
	}
	return facts, nil
}

func checkExtension(cert *x509.Certificate, rec store.Certificate) error {
	ext, err := ca.EvidenceOf(cert)
	if err != nil {
		return fmt.Errorf("tokens: certificate %s: %w", rec.Serial, err)
	}
	if hex.EncodeToString(ext.Digest) != rec.EvidenceDigest || hex.EncodeToString(ext.EKHash) != rec.EKHash {
		return fmt.Errorf("tokens: certificate %s: evidence extension differs from the record", rec.Serial)
	}
	return nil
}
