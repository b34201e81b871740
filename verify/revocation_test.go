package verify

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/testenv"
)

// revocationWait bounds how long a revocation may take to reach the
// verifier (the goal is p99 < 1 s; the bound is generous for -race).
const revocationWait = 2 * time.Second

func TestRevocationFeed(t *testing.T) {
	e := newEnv(t)
	f := newFeedServer(t)
	before := e.token(t, e.mint, e.certA)
	f.add(signSET(t, e.key, issuer, jtiOf(t, before), 1)) // revoked before the verifier started
	cfg := e.config(t)
	cfg.Revocation.FeedURL = f.URL
	v := e.verifier(t, cfg)

	testenv.WaitFor(t, revocationWait, "revocation from before the start", func() bool {
		_, err := v.Verify(t.Context(), before, e.certA)
		return errors.Is(err, errRevoked)
	})
	tok := e.token(t, e.mint, e.certA)
	if _, err := v.Verify(t.Context(), tok, e.certA); err != nil {
		t.Fatalf("Verify before revocation: %v", err)
	}
	f.add(signSET(t, e.key, issuer, jtiOf(t, tok), 2))
	took := testenv.WaitFor(t, revocationWait, "revocation", func() bool {
		_, err := v.Verify(t.Context(), tok, e.certA)
		return errors.Is(err, ErrInvalidToken) && errors.Is(err, errRevoked)
	})
	t.Logf("revocation reached the verifier in %v", took)

	// The feed drops and comes back: the client resumes after event 2.
	f.setDown(true)
	testenv.WaitFor(t, 10*time.Second, "the feed's open stream to end", func() bool { return f.openStreams() == 0 })
	f.setDown(false)
	third := e.token(t, e.mint, e.certA)
	f.add(signSET(t, e.key, issuer, jtiOf(t, third), 3))
	testenv.WaitFor(t, 10*time.Second, "revocation after reconnecting", func() bool {
		_, err := v.Verify(t.Context(), third, e.certA)
		return errors.Is(err, errRevoked)
	})
	if got := f.lastResume(); got != "2" {
		t.Errorf("Last-Event-ID on reconnect = %q, want 2", got)
	}
	// The revoked token stays refused; an unrelated one is fine.
	if _, err := v.Verify(t.Context(), tok, e.certA); !errors.Is(err, errRevoked) {
		t.Errorf("Verify revoked token later = %v", err)
	}
	if _, err := v.Verify(t.Context(), e.token(t, e.mint, e.certA), e.certA); err != nil {
		t.Errorf("Verify unrevoked token: %v", err)
	}
}

// TestRevocationForgedEvent: an event not signed by the issuer's keys, or
// naming another issuer, is not applied, nothing after it is skipped, and
// the feed counts as down so that Verify fails closed after MaxStaleness.
func TestRevocationForgedEvent(t *testing.T) {
	tests := []struct {
		name  string
		event func(e *env, jti string) string
	}{
		{"signed by an unpublished key", func(e *env, jti string) string {
			k, err := e.h.Find(context.Background(), "other")
			if err != nil {
				t.Fatalf("Find: %v", err)
			}
			return signSET(t, k, issuer, jti, 1)
		}},
		{"another issuer", func(e *env, jti string) string { return signSET(t, e.key, "https://evil.test", jti, 1) }},
		{"access token as event", func(e *env, jti string) string { return e.token(t, e.mint, e.certA) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			f := newFeedServer(t)
			victim := e.token(t, e.mint, e.certA)
			f.add(tt.event(e, jtiOf(t, victim)))
			revoked := e.token(t, e.mint, e.certA)
			f.add(signSET(t, e.key, issuer, jtiOf(t, revoked), 2))
			cfg := e.config(t)
			cfg.Revocation.FeedURL = f.URL
			v := e.verifier(t, cfg)
			testenv.WaitFor(t, 10*time.Second, "three attempts to read the feed", func() bool { return len(f.requests()) >= 3 })
			if got := f.requests(); slices.ContainsFunc(got, func(id string) bool { return id != "0" }) {
				t.Errorf("Last-Event-ID of the attempts = %q, want every one 0: nothing after the forged event skipped", got)
			}
			if _, err := v.Verify(t.Context(), victim, e.certA); err != nil {
				t.Fatalf("forged event applied: %v", err)
			}
			e.clock.Advance(DefaultStaleness + time.Second)
			if _, err := v.Verify(t.Context(), revoked, e.certA); !errors.Is(err, ErrRevocationUnknown) {
				t.Fatalf("Verify past staleness with a poisoned feed = %v, want ErrRevocationUnknown", err)
			}
		})
	}
}

func TestRevocationFeedDown(t *testing.T) {
	e := newEnv(t)
	f := newFeedServer(t)
	f.setDown(true)
	cfg := e.config(t)
	cfg.Revocation.FeedURL = f.URL
	cfg.Revocation.MaxStaleness = 10 * time.Second
	v := e.verifier(t, cfg)
	tok := e.token(t, e.mint, e.certA)
	if _, err := v.Verify(t.Context(), tok, e.certA); err != nil {
		t.Fatalf("Verify within staleness: %v", err)
	}
	e.clock.Advance(11 * time.Second)
	if _, err := v.Verify(t.Context(), tok, e.certA); !errors.Is(err, ErrRevocationUnknown) {
		t.Fatalf("Verify past staleness = %v, want ErrRevocationUnknown", err)
	}
	f.setDown(false)
	testenv.WaitFor(t, 10*time.Second, "feed back up", func() bool {
		_, err := v.Verify(t.Context(), tok, e.certA)
		return err == nil
	})
}

// introspector is a fake introspection endpoint.
type introspector struct {
	mu      sync.Mutex
	revoked map[string]bool // by jti
	fail    bool
	calls   atomic.Int32
}

func (in *introspector) introspect(t *testing.T) func(context.Context, string) (bool, error) {
	return func(_ context.Context, tok string) (bool, error) {
		in.calls.Add(1)
		in.mu.Lock()
		defer in.mu.Unlock()
		if in.fail {
			return false, errors.New("introspection unavailable")
		}
		return !in.revoked[jtiOf(t, tok)], nil
	}
}

func (in *introspector) set(fail bool) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.fail = fail
}

func TestIntrospectionFallback(t *testing.T) {
	e := newEnv(t)
	f := newFeedServer(t)
	f.setDown(true)
	revoked, active := e.token(t, e.mint, e.certA), e.token(t, e.mint, e.certA)
	in := &introspector{revoked: map[string]bool{jtiOf(t, revoked): true}}
	cfg := e.config(t)
	cfg.Revocation = Revocation{FeedURL: f.URL, Introspect: in.introspect(t), MaxStaleness: 10 * time.Second}
	v := e.verifier(t, cfg)

	if _, err := v.Verify(t.Context(), revoked, e.certA); !errors.Is(err, errRevoked) {
		t.Fatalf("Verify revoked while the feed is down = %v, want %v", err, errRevoked)
	}
	if _, err := v.Verify(t.Context(), active, e.certA); err != nil {
		t.Fatalf("Verify active while the feed is down: %v", err)
	}
	in.set(true)
	if _, err := v.Verify(t.Context(), active, e.certA); err != nil {
		t.Fatalf("Verify with introspection failing, within staleness: %v", err)
	}
	e.clock.Advance(11 * time.Second)
	if _, err := v.Verify(t.Context(), active, e.certA); !errors.Is(err, ErrRevocationUnknown) {
		t.Fatalf("Verify with neither past staleness = %v, want ErrRevocationUnknown", err)
	}
	in.set(false)
	if _, err := v.Verify(t.Context(), active, e.certA); err != nil {
		t.Fatalf("Verify with introspection back, past staleness: %v", err)
	}
	f.setDown(false)
	testenv.WaitFor(t, 10*time.Second, "feed back up", func() bool { return v.revs.down() == 0 })
	n := in.calls.Load()
	if _, err := v.Verify(t.Context(), active, e.certA); err != nil {
		t.Fatalf("Verify with the feed up: %v", err)
	}
	if in.calls.Load() != n {
		t.Errorf("introspected while the feed is up")
	}
}

func TestIntrospectionOnly(t *testing.T) {
	e := newEnv(t)
	revoked, active := e.token(t, e.mint, e.certA), e.token(t, e.mint, e.certA)
	in := &introspector{revoked: map[string]bool{jtiOf(t, revoked): true}}
	cfg := e.config(t)
	cfg.Revocation.Introspect = in.introspect(t)
	v := e.verifier(t, cfg)
	if _, err := v.Verify(t.Context(), revoked, e.certA); !errors.Is(err, errRevoked) {
		t.Fatalf("Verify revoked = %v", err)
	}
	if _, err := v.Verify(t.Context(), active, e.certA); err != nil {
		t.Fatalf("Verify active: %v", err)
	}
	in.set(true)
	if _, err := v.Verify(t.Context(), active, e.certA); !errors.Is(err, ErrRevocationUnknown) {
		t.Fatalf("Verify with introspection failing = %v, want ErrRevocationUnknown", err)
	}
}

// TestRevocationForgotten: a revoked jti is forgotten once the token has
// expired, so the set does not grow without bound.
func TestRevocationForgotten(t *testing.T) {
	now := time.Now()
	clock := func() time.Time { return now }
	r := newRevocations(clock, time.Hour)
	r.add("a", now)
	if !r.isRevoked("a", now.Add(5*time.Minute)) { // learns a's exp
		t.Fatal("a not revoked")
	}
	now = now.Add(6 * time.Minute)
	r.add("b", now) // sweeps
	if r.isRevoked("a", time.Time{}) {
		t.Error("a kept after its expiry")
	}
	if !r.isRevoked("b", now.Add(time.Hour)) {
		t.Error("b forgotten")
	}
}
