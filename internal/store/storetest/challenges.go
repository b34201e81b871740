package storetest

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/internal/store"
)

func testChallengeRoundTrip(t *testing.T, h *harness) {
	st := h.fresh(t)
	ctx := context.Background()
	want := Challenge("c1", Device("d1"))
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
	if err := st.CreateChallenge(ctx, want); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("second CreateChallenge = %v, want ErrConflict", err)
	}
	if _, err := st.Challenge(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Challenge(unknown) = %v, want ErrNotFound", err)
	}
}

// testTimesNormalised: times come back in UTC at microsecond precision.
func testTimesNormalised(t *testing.T, h *harness) {
	st := h.fresh(t)
	ctx := context.Background()
	c := Challenge("tz", Device("d1"))
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

func testCreateChallengeInvalid(t *testing.T, h *harness) {
	st := h.fresh(t)
	d := Device("d1")
	for _, tc := range []struct {
		name   string
		mutate func(*store.Challenge)
	}{
		{"empty id", func(c *store.Challenge) { c.ID = "" }},
		{"unknown kind", func(c *store.Challenge) { c.Kind = "steal" }},
		{"secret hash not sha256", func(c *store.Challenge) { c.SecretHash = c.SecretHash[:16] }},
		{"no nonce", func(c *store.Challenge) { c.Nonce = nil }},
		{"expires before created", func(c *store.Challenge) { c.ExpiresAt = c.CreatedAt }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Challenge("bad", d)
			tc.mutate(&c)
			err := st.CreateChallenge(context.Background(), c)
			if err == nil || !strings.HasPrefix(err.Error(), "store: create challenge") {
				t.Fatalf("CreateChallenge = %v, want a store: create challenge error", err)
			}
			if _, err := st.Challenge(context.Background(), c.ID); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("the refused challenge: %v, want ErrNotFound", err)
			}
		})
	}
}

func testConsumeChallenge(t *testing.T, h *harness) {
	st := h.fresh(t)
	ctx := context.Background()
	d := Device("d1")
	c := Challenge("c1", d)
	if err := st.CreateChallenge(ctx, c); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		id   string
		now  time.Time
		want error
	}{
		{"unknown", "nope", T0, store.ErrNotFound},
		{"at expiry", c.ID, c.ExpiresAt, store.ErrChallengeExpired},
		{"after expiry", c.ID, c.ExpiresAt.Add(time.Second), store.ErrChallengeExpired},
		{"first", c.ID, T0.Add(time.Second), nil},
		{"second", c.ID, T0.Add(2 * time.Second), store.ErrChallengeUsed},
		{"used and expired", c.ID, c.ExpiresAt.Add(time.Hour), store.ErrChallengeUsed},
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
	if err != nil || got.ConsumedAt == nil || !got.ConsumedAt.Equal(T0.Add(time.Second)) {
		t.Fatalf("stored challenge ConsumedAt = %v, %v; want the first consume's time", got.ConsumedAt, err)
	}
}

func testPurgeExpiredChallenges(t *testing.T, h *harness) {
	st := h.fresh(t)
	ctx := context.Background()
	d := Device("d1")
	for i, ttl := range []time.Duration{time.Minute, 2 * time.Minute, time.Hour} {
		c := Challenge(string(rune('a'+i)), d)
		c.ExpiresAt = T0.Add(ttl)
		if err := st.CreateChallenge(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st.ConsumeChallenge(ctx, "a", T0); err != nil {
		t.Fatal(err)
	}
	n, err := st.PurgeExpiredChallenges(ctx, T0.Add(10*time.Minute))
	if err != nil || n != 2 {
		t.Fatalf("PurgeExpiredChallenges = %d, %v; want 2", n, err)
	}
	for id, want := range map[string]error{"a": store.ErrNotFound, "b": store.ErrNotFound, "c": nil} {
		if _, err := st.Challenge(ctx, id); !errors.Is(err, want) {
			t.Errorf("Challenge(%s) after purge = %v, want %v", id, err, want)
		}
	}
}
