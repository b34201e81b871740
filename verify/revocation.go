package verify

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"sync"
	"time"

	"github.com/sigil-dev/sigil/token"
)

// revocations is the set of revoked jtis and certificates learned from
// the feed, and the feed's health.
type revocations struct {
	now      func() time.Time
	lifetime time.Duration

	mu        sync.RWMutex
	revoked   map[string]time.Time // jti -> forget after
	certs     map[string]time.Time // x5t#S256 -> forget after (the certificate's expiry)
	up        bool
	downSince time.Time
	lastSweep time.Time
}

func newRevocations(now func() time.Time, lifetime time.Duration) *revocations {
	t := now()
	return &revocations{now: now, lifetime: lifetime, revoked: map[string]time.Time{}, certs: map[string]time.Time{}, downSince: t, lastSweep: t}
}

// addCertificate records the certificate with thumbprint x5t as revoked
// until it expires at notAfter (a zero notAfter: the lifetime after now).
func (r *revocations) addCertificate(x5t string, notAfter time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if notAfter.IsZero() {
		notAfter = r.now().Add(r.lifetime)
	}
	if t, ok := r.certs[x5t]; !ok || notAfter.After(t) {
		r.certs[x5t] = notAfter
	}
	r.sweepLocked()
}

// certificateRevoked reports whether the certificate with thumbprint x5t
// is revoked.
func (r *revocations) certificateRevoked(x5t string) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	_, ok := r.certs[x5t]
	return ok
}

// add records jti as revoked at toe.
func (r *revocations) add(jti string, toe time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	forget := toe.Add(r.lifetime)
	if t, ok := r.revoked[jti]; !ok || forget.After(t) {
		r.revoked[jti] = forget
	}
	r.sweepLocked()
}

// sweepLocked forgets expired entries, at most once a minute.
func (r *revocations) sweepLocked() {
	now := r.now()
	if now.Sub(r.lastSweep) < time.Minute {
		return
	}
	r.lastSweep = now
	for jti, t := range r.revoked {
		if now.After(t) {
			delete(r.revoked, jti)
		}
	}
	for x5t, t := range r.certs {
		if now.After(t) {
			delete(r.certs, x5t)
		}
	}
}

// isRevoked reports whether jti is revoked; a revoked token's entry is
// then kept only until the token's own expiry.
func (r *revocations) isRevoked(jti string, exp time.Time) bool {
	r.mu.RLock()
	t, ok := r.revoked[jti]
	r.mu.RUnlock()
	if ok && exp.Before(t) {
		r.mu.Lock()
		r.revoked[jti] = exp
		r.mu.Unlock()
	}
	return ok
}

// size is how many revoked jtis are remembered.
func (r *revocations) size() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.revoked)
}

func (r *revocations) setUp(up bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.up && !up {
		r.downSince = r.now()
	}
	r.up = up
}

// down returns how long the feed has been down, 0 when it is up.
func (r *revocations) down() time.Duration {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.up {
		return 0
	}
	return max(r.now().Sub(r.downSince), time.Nanosecond)
}

// checkRevoked refuses a revoked token, consulting the feed's set and,
// while the feed is down, introspection; see the package doc.
func (v *Verifier) checkRevoked(ctx context.Context, token string, c *Claims) error {
	rc := v.cfg.Revocation
	feed, intro := rc.FeedURL != "", rc.Introspect != nil
	if !feed && !intro {
		return nil
	}
	if feed && v.revs.certificateRevoked(c.Confirmation) {
		return invalid(errCertRevoked)
	}
	if feed && v.revs.isRevoked(c.ID, c.Expiry) {
		return invalid(errRevoked)
	}
	down := time.Duration(1)
	if feed {
		down = v.revs.down()
		if down == 0 {
			return nil
		}
	}
	if intro {
		active, err := rc.Introspect(ctx, token)
		switch {
		case err == nil && !active:
			return invalid(errRevoked)
		case err == nil:
			return nil
		case !feed:
			v.log.WarnContext(ctx, "verify: introspection failed", "jti", c.ID, "err", err)
			return ErrRevocationUnknown
		}
		v.log.WarnContext(ctx, "verify: introspection failed while the revocation feed is down", "jti", c.ID, "err", err)
	}
	if down > rc.MaxStaleness {
		return ErrRevocationUnknown
	}
	return nil
}

// CheckCertificate refuses a peer certificate that the revocation feed
// says is revoked (ErrCertificateRevoked), and any certificate while the
// feed has been down longer than MaxStaleness (ErrRevocationUnknown:
// certificates have no introspection to stand in). Without a feed it
// checks nothing. Verify checks the certificate a token is bound to the
// same way.
func (v *Verifier) CheckCertificate(cert *x509.Certificate) error {
	if v.cfg.Revocation.FeedURL == "" || cert == nil {
		return nil
	}
	if v.peerRevoked(cert) {
		return fmt.Errorf("%w: serial %x", ErrCertificateRevoked, cert.SerialNumber)
	}
	if v.revs.down() > v.cfg.Revocation.MaxStaleness {
		return fmt.Errorf("%w: certificate serial %x: the revocation feed is down", ErrRevocationUnknown, cert.SerialNumber)
	}
	return nil
}

// peerRevoked reports whether the feed has revoked cert.
func (v *Verifier) peerRevoked(cert *x509.Certificate) bool {
	return v.cfg.Revocation.FeedURL != "" && v.revs.certificateRevoked(token.Thumbprint(cert.Raw))
}

// VerifyConnection is a tls.Config.VerifyConnection that refuses a peer
// whose certificate CheckCertificate refuses. Go runs VerifyConnection on
// every handshake, resumed sessions included (unlike
// VerifyPeerCertificate), so a session resumed after its certificate was
// revoked is refused too.
func (v *Verifier) VerifyConnection(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return nil // no client certificate: the Config's ClientAuth decides
	}
	return v.CheckCertificate(cs.PeerCertificates[0])
}
