package witness

import (
	"errors"
	"fmt"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Results of a submission, the "result" label of
// sigil_audit_witness_submissions_total.
const (
	resultCosigned     = "cosigned"
	resultUnreachable  = "unreachable"  // no answer: the witness is down or cut off
	resultRefused      = "refused"      // 403, 404: the witness is not configured for this log
	resultInconsistent = "inconsistent" // 409 conflict, 422: a split view, or a fork
	resultPushback     = "pushback"     // 429, 503
	resultOther        = "other"        // a bad cosignature, another status, a store failure
)

// metrics holds the collectors WithMetrics registers; nil records nothing.
type metrics struct {
	lagEntries *prometheus.GaugeVec
	shardLags  *prometheus.GaugeVec
	mu         sync.Mutex
	lags       map[string]map[string]uint64 // by witness, by shard
	size       *prometheus.GaugeVec
	results    *prometheus.CounterVec
}

func newMetrics(r prometheus.Registerer, ws []*Client) (*metrics, error) {
	if r == nil {
		return nil, nil
	}
	m := &metrics{
		lagEntries: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sigil_audit_witness_lag_entries",
			Help: "Entries the log's latest checkpoint covers beyond the last one the witness cosigned, as seen by the replica that submits (the checkpoint lease holder); for a log sharded by time, the sum over the current shard and the sealed shards whose final checkpoints the witness has not cosigned.",
		}, []string{"witness"}),
		shardLags: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sigil_audit_witness_shard_lag_entries",
			Help: "For a log sharded by time: entries of the shard's latest checkpoint (a sealed shard's final one) beyond the last one the witness cosigned. A sealed shard's series goes once its final checkpoint is cosigned; one that stays was given up.",
		}, []string{"witness", "shard"}),
		size: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sigil_audit_witness_cosigned_size",
			Help: "Size of the last checkpoint the witness cosigned.",
		}, []string{"witness"}),
		results: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sigil_audit_witness_submissions_total",
			Help: "Checkpoints submitted to the witness, by result: cosigned, unreachable, refused (not configured for this log), inconsistent (split view or fork), pushback, other.",
		}, []string{"witness", "result"}),
	}
	for _, c := range []prometheus.Collector{m.lagEntries, m.shardLags, m.size, m.results} {
		if err := r.Register(c); err != nil {
			return nil, fmt.Errorf("witness: register metrics: %w", err)
		}
	}
	for _, w := range ws {
		m.lagEntries.WithLabelValues(w.ID())
		for _, res := range []string{resultCosigned, resultUnreachable, resultRefused, resultInconsistent, resultPushback, resultOther} {
			m.results.WithLabelValues(w.ID(), res) // export zeros
		}
	}
	return m, nil
}

func (m *metrics) lag(w *Client, entries uint64) {
	if m != nil {
		m.lagEntries.WithLabelValues(w.ID()).Set(float64(entries))
	}
}

// shardLag sets the lag of a shard of a sharded log (named; "" is a log
// not sharded, which has only the witness's lag); the witness's lag is
// then the sum over its shards: the current one's and the sealed ones'
// whose final checkpoints it has not cosigned.
func (m *metrics) shardLag(w *Client, shard string, entries uint64) {
	if m == nil || shard == "" {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.lags == nil {
		m.lags = map[string]map[string]uint64{}
	}
	if m.lags[w.ID()] == nil {
		m.lags[w.ID()] = map[string]uint64{}
	}
	m.lags[w.ID()][shard] = entries
	m.shardLags.WithLabelValues(w.ID(), shard).Set(float64(entries))
	m.sumLag(w)
}

// shardCosigned records a shard's latest checkpoint cosigned: a sealed
// shard's series goes, it is done.
func (m *metrics) shardCosigned(w *Client, shard string, sealed bool) {
	if m == nil || shard == "" {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if sealed {
		delete(m.lags[w.ID()], shard)
		m.shardLags.DeleteLabelValues(w.ID(), shard)
	} else if m.lags[w.ID()] != nil {
		m.lags[w.ID()][shard] = 0
		m.shardLags.WithLabelValues(w.ID(), shard).Set(0)
	}
	m.sumLag(w)
}

// sumLag sets the witness's lag to the sum of its shards'; m.mu held.
func (m *metrics) sumLag(w *Client) {
	var sum uint64
	for _, n := range m.lags[w.ID()] {
		sum += n
	}
	m.lagEntries.WithLabelValues(w.ID()).Set(float64(sum))
}

func (m *metrics) cosigned(w *Client, size uint64) {
	if m != nil {
		m.size.WithLabelValues(w.ID()).Set(float64(size))
		m.lagEntries.WithLabelValues(w.ID()).Set(0)
	}
}

func (m *metrics) submitted(w *Client, err error) {
	if m != nil {
		m.results.WithLabelValues(w.ID(), result(err)).Inc()
	}
}

// result classifies a submission's outcome.
func result(err error) string {
	var refused *SubmitError
	switch {
	case err == nil:
		return resultCosigned
	case errors.Is(err, ErrUnknownLog), errors.Is(err, ErrLogSignature):
		return resultRefused
	case errors.Is(err, ErrInconsistent), errors.Is(err, ErrConflict):
		return resultInconsistent
	case errors.Is(err, ErrUnreachable):
		return resultUnreachable
	case errors.Is(err, ErrPushback):
		return resultPushback
	case errors.As(err, &refused), errors.Is(err, ErrBadCosignature):
		return resultOther
	}
	return resultOther
}
