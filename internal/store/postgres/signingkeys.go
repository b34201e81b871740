package postgres

import (
	"context"
	"fmt"
	"time"
)

// FirstSeen records now for kid unless a time is recorded (a concurrent
// first sighting is waited for), and returns the recorded time.
func (w writer) FirstSeen(ctx context.Context, kid string, now time.Time) (time.Time, error) {
	if kid == "" {
		return time.Time{}, fmt.Errorf("store: first seen: empty key id")
	}
	if _, err := w.q.Exec(ctx, `INSERT INTO signing_keys (kid, first_seen) VALUES ($1, $2)
		ON CONFLICT (kid) DO NOTHING`, kid, micros(now)); err != nil {
		return time.Time{}, fmt.Errorf("store: first seen %q: %w", kid, classify(err))
	}
	var seen int64
	if err := w.q.QueryRow(ctx, `SELECT first_seen FROM signing_keys WHERE kid = $1`, kid).Scan(&seen); err != nil {
		return time.Time{}, fmt.Errorf("store: first seen %q: %w", kid, err)
	}
	return fromMicros(seen), nil
}
