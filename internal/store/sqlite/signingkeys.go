package sqlite

import (
	"context"
	"fmt"
	"time"
)

// FirstSeen records now as the time key id kid was first seen unless a
// time is recorded already, and returns the recorded time. Every replica
// gets the same answer for a kid, whoever asked first.
func (w writer) FirstSeen(ctx context.Context, kid string, now time.Time) (time.Time, error) {
	if kid == "" {
		return time.Time{}, fmt.Errorf("store: first seen: empty key id")
	}
	if _, err := w.q.ExecContext(ctx, `INSERT INTO signing_keys (kid, first_seen) VALUES (?, ?)
		ON CONFLICT (kid) DO NOTHING`, kid, micros(now)); err != nil {
		return time.Time{}, fmt.Errorf("store: first seen %q: %w", kid, classify(err))
	}
	var seen int64
	if err := w.q.QueryRowContext(ctx, `SELECT first_seen FROM signing_keys WHERE kid = ?`, kid).Scan(&seen); err != nil {
		return time.Time{}, fmt.Errorf("store: first seen %q: %w", kid, err)
	}
	return fromMicros(seen), nil
}
