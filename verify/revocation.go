package verify

import (
	"context"
	"sync"
	"time"
)

// revocations is the set of revoked jtis learned from the feed, and the
// feed's health.
type revocations struct {
	now      func() time.Time
	lifetime time.Duration

	mu        sync.RWMutex
	revoked   map[string]time.Time // jti -> forget after
	up        bool
	downSince time.Time
	lastSweep time.Time
}

func newRevocations(now func() time.Time, lifetime time.Duration) *revocations {
	t := now()
	return &revocations{now: now, lifetime: lifetime, revoked: map[string]time.Time{}, downSince: t, lastSweep: t}
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
