package store

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestChallengeRoundTrip(t *testing.T) {
	st, _ := openStore(t)
	ctx := context.Background()
	want := testChallenge("c1", testDevice("d1"))
	if err := st.CreateChallenge(ctx, want); err != nil {
		t.Fatal(err)
	}
	got, err := st.Challenge(ctx, want.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Challenge =\n%+v\nwant\n%+v", got, want)
	}
	if err := st.CreateChallenge(ctx, want); !errors.Is(err, ErrConflict) {
		t.Fatalf("second CreateChallenge = %v, want ErrConflict", err)
	}
	if _, err := st.Challenge(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Challenge(unknown) = %v, want ErrNotFound", err)
	}
}

// TestTimesNormalised: times come back in UTC at microsecond precision.
func TestTimesNormalised(t *testing.T) {
	st, _ := openStore(t)
	ctx := context.Background()
	c := testChallenge("tz", testDevice("d1"))
	c.CreatedAt = time.Date(2026, 3, 1, 13, 0, 0, 123456789, time.FixedZone("CET", 3600))
	c.ExpiresAt = c.CreatedAt.Add(time.Minute)
	if err := st.CreateChallenge(ctx, c); err != nil {
		t.Fatal(err)
	}
	got, err := st.Challenge(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	want := time.Date(2026, 3, 1, 12, 0, 0, 123456000, time.UTC)
	if got.CreatedAt != want || got.CreatedAt.Location() != time.UTC {
		t.Fatalf("CreatedAt = %v, want %v", got.CreatedAt, want)
	}
}

func TestCreateChallengeInvalid(t *testing.T) {
	st, _ := openStore(t)
	d := testDevice("d1")
	for _, tc := range []struct {
		name   string
		mutate func(*Challenge)
		want   string
	}{
		{"empty id", func(c *Challenge) { c.ID = "" }, "CHECK constraint failed"},
		{"unknown kind", func(c *Challenge) { c.Kind = "steal" }, "CHECK constraint failed"},
		{"secret hash not sha256", func(c *Challenge) { c.SecretHash = c.SecretHash[:16] }, "CHECK constraint failed"},
		{"no nonce", func(c *Challenge) { c.Nonce = nil }, "NOT NULL constraint failed"},
		{"expires before created", func(c *Challenge) { c.ExpiresAt = c.CreatedAt }, "CHECK constraint failed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := testChallenge("bad", d)
			tc.mutate(&c)
			err := st.CreateChallenge(context.Background(), c)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "store: create challenge") {
				t.Fatalf("CreateChallenge = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestConsumeChallenge(t *testing.T) {
	st, _ := openStore(t)
	ctx := context.Background()
	d := testDevice("d1")
	c := testChallenge("c1", d)
	if err := st.CreateChallenge(ctx, c); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		id   string
		now  time.Time
		want error
	}{
		{"unknown", "nope", t0, ErrNotFound},
		{"at expiry", c.ID, c.ExpiresAt, ErrChallengeExpired},
		{"after expiry", c.ID, c.ExpiresAt.Add(time.Second), ErrChallengeExpired},
		{"first", c.ID, t0.Add(time.Second), nil},
		{"second", c.ID, t0.Add(2 * time.Second), ErrChallengeUsed},
		{"used and expired", c.ID, c.ExpiresAt.Add(time.Hour), ErrChallengeUsed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := st.ConsumeChallenge(ctx, tc.id, tc.now)
			if !errors.Is(err, tc.want) {
				t.Fatalf("ConsumeChallenge = %v, want %v", err, tc.want)
			}
			if tc.want != nil {
				return
			}
			want := c
			want.ConsumedAt = &tc.now
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("ConsumeChallenge =\n%+v\nwant\n%+v", got, want)
			}
		})
	}
	got, err := st.Challenge(ctx, c.ID)
	if err != nil || got.ConsumedAt == nil || !got.ConsumedAt.Equal(t0.Add(time.Second)) {
		t.Fatalf("stored challenge ConsumedAt = %v, %v; want the first consume's time", got.ConsumedAt, err)
	}
}

// TestConsumeChallengeConcurrent: of 64 concurrent consumers of one
// challenge, spread over two Stores on one file as two processes would be,
// exactly one wins and every other sees ErrChallengeUsed.
func TestConsumeChallengeConcurrent(t *testing.T) {
	st1, path := openStore(t)
	st2 := openPath(t, path)
	ctx := context.Background()
	for round := range 5 {
		c := testChallenge("race-"+string(rune('a'+round)), testDevice("d1"))
		if err := st1.CreateChallenge(ctx, c); err != nil {
			t.Fatal(err)
		}
		const n = 64
		var wg sync.WaitGroup
		start := make(chan struct{})
		errs := make([]error, n)
		for i := range n {
			st := []Store{st1, st2}[i%2]
			wg.Go(func() {
				<-start
				_, errs[i] = st.ConsumeChallenge(ctx, c.ID, t0.Add(time.Second))
			})
		}
		close(start)
		wg.Wait()
		wins := 0
		for i, err := range errs {
			switch {
			case err == nil:
				wins++
			case !errors.Is(err, ErrChallengeUsed):
				t.Errorf("round %d consumer %d: %v, want ErrChallengeUsed", round, i, err)
			}
		}
		if wins != 1 {
			t.Fatalf("round %d: %d consumers succeeded, want exactly 1", round, wins)
		}
	}
}

func TestPurgeExpiredChallenges(t *testing.T) {
	st, _ := openStore(t)
	ctx := context.Background()
	d := testDevice("d1")
	for i, ttl := range []time.Duration{time.Minute, 2 * time.Minute, time.Hour} {
		c := testChallenge(string(rune('a'+i)), d)
		c.ExpiresAt = t0.Add(ttl)
		if err := st.CreateChallenge(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st.ConsumeChallenge(ctx, "a", t0); err != nil {
		t.Fatal(err)
	}
	n, err := st.PurgeExpiredChallenges(ctx, t0.Add(10*time.Minute))
	if err != nil || n != 2 {
		t.Fatalf("PurgeExpiredChallenges = %d, %v; want 2", n, err)
	}
	for id, want := range map[string]error{"a": ErrNotFound, "b": ErrNotFound, "c": nil} {
		if _, err := st.Challenge(ctx, id); !errors.Is(err, want) {
			t.Errorf("Challenge(%s) after purge = %v, want %v", id, err, want)
		}
	}
}
