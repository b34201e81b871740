package storetest

import (
	"context"
	"testing"
	"time"
)

// testFirstSeen: the first sighting of a key is recorded and returned to
// every later caller; an empty key id is refused. (FirstSeenOnce races
// first sightings.)
func testFirstSeen(t *testing.T, h *harness) {
	st := h.fresh(t)
	ctx := context.Background()
	for i, kid := range []string{"kid-1", "kid-1", "kid-2"} {
		now := T0.Add(time.Duration(i) * time.Minute)
		seen, err := st.FirstSeen(ctx, kid, now)
		want := T0
		if kid == "kid-2" {
			want = now
		}
		if err != nil || !seen.Equal(want) {
			t.Fatalf("FirstSeen(%s, %v) = %v, %v; want %v", kid, now, seen, err, want)
		}
	}
	if _, err := st.FirstSeen(ctx, "", T0); err == nil {
		t.Error("an empty key id was recorded")
	}
}
