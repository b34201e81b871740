package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// fakeFetch answers tokens "t1", "t2", … with lifetime life, counting calls.
type fakeFetch struct {
	n    atomic.Int32
	life int64
	gate chan struct{} // if set, each fetch waits for it
	err  error
}

func (f *fakeFetch) fetch(ctx context.Context) (*TokenResponse, error) {
	if f.gate != nil {
		<-f.gate
	}
	n := f.n.Add(1)
	if f.err != nil {
		return nil, f.err
	}
	return &TokenResponse{AccessToken: fmt.Sprintf("t%d", n), ExpiresIn: f.life}, nil
}

func TestTokenCacheRefreshesAt80Percent(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	tc := newTokenCache(nil)
	tc.now = func() time.Time { return now }
	f := &fakeFetch{life: 100}
	k := cacheKey{audience: "a"}
	get := func() string {
		t.Helper()
		tok, err := tc.get(t.Context(), k, f.fetch)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	if tok := get(); tok != "t1" {
		t.Fatalf("first get = %q", tok)
	}
	now = now.Add(79 * time.Second)
	if tok := get(); tok != "t1" {
		t.Fatalf("at 79%% of the lifetime: %q, want the cached t1", tok)
	}
	now = now.Add(time.Second)
	if tok := get(); tok != "t2" {
		t.Fatalf("at 80%% of the lifetime: %q, want a new token", tok)
	}
	tc.forget(k, "t1") // an older token: t2 stays
	if tok := get(); tok != "t2" {
		t.Fatalf("after forgetting a replaced token: %q, want t2", tok)
	}
	tc.forget(k, "t2")
	if tok := get(); tok != "t3" {
		t.Fatalf("after forget: %q, want a new token", tok)
	}
}

// The token cache tests run in synctest bubbles: synctest.Wait returns once
// every other goroutine is blocked, here on the one fetch.

func TestTokenCacheOneFetchPerKey(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tc := newTokenCache(nil)
		f := &fakeFetch{life: 300, gate: make(chan struct{})}
		var wg sync.WaitGroup
		got := make(chan string, 64)
		for range 64 {
			wg.Go(func() {
				tok, err := tc.get(context.Background(), cacheKey{audience: "a"}, f.fetch)
				if err != nil {
					t.Error(err)
				}
				got <- tok
			})
		}
		synctest.Wait() // all 64 wait on the one fetch
		close(f.gate)
		wg.Wait()
		close(got)
		for tok := range got {
			if tok != "t1" {
				t.Errorf("got %q, want every caller to share t1", tok)
			}
		}
		if n := f.n.Load(); n != 1 {
			t.Errorf("%d fetches for one key, want 1", n)
		}
	})
}

func TestTokenCacheCancelledCallerDoesNotFailOthers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tc := newTokenCache(nil)
		f := &fakeFetch{life: 300, gate: make(chan struct{})}
		ctx, cancel := context.WithCancel(context.Background())
		first := make(chan error, 1)
		go func() {
			_, err := tc.get(ctx, cacheKey{audience: "a"}, f.fetch)
			first <- err
		}()
		synctest.Wait() // the first caller's fetch waits on the gate
		second := make(chan string, 1)
		go func() {
			tok, _ := tc.get(context.Background(), cacheKey{audience: "a"}, f.fetch)
			second <- tok
		}()
		synctest.Wait() // the second caller waits on the same fetch
		cancel()
		if err := <-first; !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled caller: %v", err)
		}
		close(f.gate)
		if tok := <-second; tok != "t1" {
			t.Errorf("the other caller got %q, want t1", tok)
		}
		if n := f.n.Load(); n != 1 {
			t.Errorf("%d fetches, want the second caller to share the first's", n)
		}
	})
}

func TestTokenCacheErrorsAreNotCached(t *testing.T) {
	tc := newTokenCache(nil)
	f := &fakeFetch{life: 300, err: ErrDenied}
	for range 2 {
		if _, err := tc.get(t.Context(), cacheKey{}, f.fetch); !errors.Is(err, ErrDenied) {
			t.Fatalf("err = %v", err)
		}
	}
	if n := f.n.Load(); n != 2 {
		t.Errorf("%d fetches, want 2: a failure must not be cached", n)
	}
	f.err, f.life = nil, 0
	if _, err := tc.get(t.Context(), cacheKey{}, f.fetch); err == nil {
		t.Error("an answer without expires_in was accepted")
	}
}

func TestTokenCacheBounded(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	tc := newTokenCache(nil)
	tc.now = func() time.Time { return now }
	for i := range maxCachedTokens + 100 {
		tc.put(cacheKey{audience: fmt.Sprint(i)}, cachedToken{token: "x", refresh: now.Add(time.Minute), expiresAt: now.Add(time.Hour)})
	}
	if n := len(tc.m); n > maxCachedTokens {
		t.Errorf("%d cached tokens, want at most %d", n, maxCachedTokens)
	}
}

func TestForgetSubject(t *testing.T) {
	tc := newTokenCache(nil)
	alice, bob := subjectDigest("alice-token"), subjectDigest("bob-token")
	for _, k := range []cacheKey{{audience: "a", subject: alice}, {audience: "b", subject: alice}, {audience: "a", subject: bob}, {audience: "a"}} {
		tc.put(k, cachedToken{token: "x", refresh: time.Now().Add(time.Hour), expiresAt: time.Now().Add(time.Hour)})
	}
	tc.forgetSubject(alice)
	if len(tc.m) != 2 {
		t.Errorf("%d tokens left, want bob's and the workload's own", len(tc.m))
	}
	for k := range tc.m {
		if k.subject == alice {
			t.Errorf("alice's token for %s survived", k.audience)
		}
	}
}

func TestServerErrorKinds(t *testing.T) {
	for _, c := range []struct {
		err               *ServerError
		denied, temporary bool
	}{
		{&ServerError{Status: 403, Code: "policy_denied"}, true, false},
		{&ServerError{Status: 400, Code: "invalid_scope"}, true, false},
		{&ServerError{Status: 400, Code: "invalid_target"}, true, false},
		{&ServerError{Status: 400, Code: "invalid_grant"}, true, false},
		{&ServerError{Status: 400, Code: "invalid_request"}, true, false}, // a refused subject token (RFC 8693 §2.2.2)
		{&ServerError{Status: 503, Code: "unavailable"}, false, true},
		{&ServerError{Status: 429}, false, true},
	} {
		err := fmt.Errorf("wrapped: %w", c.err)
		if errors.Is(err, ErrDenied) != c.denied || errors.Is(err, ErrUnavailable) != c.temporary {
			t.Errorf("%d %s: denied %v, unavailable %v", c.err.Status, c.err.Code, errors.Is(err, ErrDenied), errors.Is(err, ErrUnavailable))
		}
	}
}

// entry, behind CachedToken, gives the token's expiry with it, from the
// same cache get uses.
func TestTokenCacheEntryExpiry(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	tc := newTokenCache(nil)
	tc.now = func() time.Time { return now }
	f := &fakeFetch{life: 100}
	k := cacheKey{audience: "a"}
	e, err := tc.entry(t.Context(), k, f.fetch)
	if err != nil || e.token != "t1" || !e.expiresAt.Equal(now.Add(100*time.Second)) {
		t.Fatalf("entry = %+v, %v", e, err)
	}
	if tok, _ := tc.get(t.Context(), k, f.fetch); tok != "t1" || f.n.Load() != 1 {
		t.Errorf("get after entry: %q after %d fetches, want the cached t1", tok, f.n.Load())
	}
}
