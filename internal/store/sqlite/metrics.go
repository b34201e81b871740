package sqlite

import "github.com/prometheus/client_golang/prometheus"

// The store is a prometheus.Collector of what its group committer and its
// checkpointer have done since it opened (sigild registers it). A WAL that
// checkpoints keep failing on grows without bound: alert on
// sigil_sqlite_checkpoint_failures_total rising, or sigil_sqlite_wal_frames
// staying high.
var (
	descCommits = prometheus.NewDesc("sigil_sqlite_commits_total",
		"Write transactions committed: how=alone (a Tx that found the committer idle) or batch (group commit).", []string{"how"}, nil)
	descBatched = prometheus.NewDesc("sigil_sqlite_batched_calls_total",
		"Tx calls committed in batches; over the batch commits, the mean batch size.", nil, nil)
	descCheckpoints = prometheus.NewDesc("sigil_sqlite_checkpoints_total",
		"WAL checkpoints: kind=passive (beside the writer), held (the writer held so that the WAL starts over), truncate (after a quiet second).", []string{"kind"}, nil)
	descCheckpointFailures = prometheus.NewDesc("sigil_sqlite_checkpoint_failures_total",
		"WAL checkpoints that failed; each is retried, and the WAL grows meanwhile.", nil, nil)
	descWALFrames = prometheus.NewDesc("sigil_sqlite_wal_frames",
		"Frames (pages) in the WAL file when it was last checkpointed.", nil, nil)
)

var _ prometheus.Collector = (*sqliteStore)(nil)

// Describe implements prometheus.Collector.
func (s *sqliteStore) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descCommits, descBatched, descCheckpoints, descCheckpointFailures, descWALFrames} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (s *sqliteStore) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	g, c := &s.gc.stats, &s.ck.stats
	counter(descCommits, g.alone.Load(), "alone")
	counter(descCommits, g.batches.Load(), "batch")
	counter(descBatched, g.batched.Load())
	counter(descCheckpoints, c.passive.Load(), "passive")
	counter(descCheckpoints, c.held.Load(), "held")
	counter(descCheckpoints, c.truncate.Load(), "truncate")
	counter(descCheckpointFailures, c.failed.Load())
	ch <- prometheus.MustNewConstMetric(descWALFrames, prometheus.GaugeValue, float64(c.walFrames.Load()))
}
