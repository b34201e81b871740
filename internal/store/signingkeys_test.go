package store

import (
	"context"
	"sync"
	"testing"
	"time"
)

// Of concurrent first sightings of a key, on two handles to one database,
// every caller gets the same, first recorded time.
func TestFirstSeen(t *testing.T) {
	ctx := context.Background()
	a, path := openStore(t)
	b := openPath(t, path)
	base := time.Unix(1_800_000_000, 0).UTC()
	got := make([]time.Time, 32)
	var wg sync.WaitGroup
	for i := range got {
		st := a
		if i%2 == 1 {
			st = b
		}
		wg.Go(func() {
			seen, err := st.FirstSeen(ctx, "kid-1", base.Add(time.Duration(i)*time.Second))
			if err != nil {
				t.Error(err)
			}
			got[i] = seen
		})
	}
	wg.Wait()
	for i, g := range got {
		if !g.Equal(got[0]) || g.Before(base) || g.After(base.Add(31*time.Second)) {
			t.Fatalf("caller %d saw %v, caller 0 %v", i, g, got[0])
		}
	}
	if _, err := a.FirstSeen(ctx, "", base); err == nil {
		t.Error("an empty key id was recorded")
	}
}
