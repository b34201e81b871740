package main

import (
	"slices"
	"testing"
	"time"
)

// TestWitnessOrigins: the origins sigild audit witness-config lists: the
// current shard's, then the next periods' shards, none twice; the log's
// own origin while it is not sharded.
func TestWitnessOrigins(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 6, 14, 30, 0, 0, time.UTC)
	for _, tc := range []struct {
		name, current string
		period        time.Duration
		next          int
		want          []string
	}{
		{"not sharded", "", 0, 5, []string{"log.test"}},
		{"sharded, current is now's", "2026-12-06T14Z", time.Hour, 2,
			[]string{"log.test/2026-12-06T14Z", "log.test/2026-12-06T15Z", "log.test/2026-12-06T16Z"}},
		{"to be sharded", "", time.Hour, 1,
			[]string{"log.test", "log.test/2026-12-06T14Z", "log.test/2026-12-06T15Z"}},
		{"current behind", "2026-12-06T12Z", time.Hour, 0,
			[]string{"log.test/2026-12-06T12Z", "log.test/2026-12-06T14Z"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := witnessOrigins("log.test", tc.current, tc.period, now, tc.next)
			if err != nil || !slices.Equal(got, tc.want) {
				t.Fatalf("witnessOrigins = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}
