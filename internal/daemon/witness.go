package daemon

import (
	"cmp"
	"context"
	"crypto"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sigil-dev/sigil/audit"
	"github.com/sigil-dev/sigil/internal/config"
	"github.com/sigil-dev/sigil/internal/server"
	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/internal/witness"
)

// LogVerifier returns the verifier of the audit log's checkpoints: pub, the
// audit key, under the log's origin (what a witness is configured with,
// `sigild audit witness-key`). st is the log's store.
func LogVerifier(ctx context.Context, cfg *config.Config, st store.Store, pub crypto.PublicKey) (*audit.Verifier, error) {
	origin, err := AuditOrigin(ctx, cfg, st, pub, nil)
	if err != nil {
		return nil, err
	}
	return audit.NewVerifier(origin, pub)
}

// defaultWitnessTimeout bounds one submission when audit.witness_timeout
// is not set.
const defaultWitnessTimeout = 10 * time.Second

// openWitnesses sets up the Cosigner of l's checkpoints for the
// configured witnesses, sharing the log's lease (one replica submits), and
// the published view every replica serves.
func (d *Daemon) openWitnesses(l *audit.Log, reg prometheus.Registerer) error {
	if len(d.cfg.Audit.Witnesses) == 0 {
		return nil
	}
	hc := &http.Client{Timeout: cmp.Or(d.cfg.Audit.WitnessTimeout, defaultWitnessTimeout)}
	var ws []*witness.Client
	for _, w := range d.cfg.Audit.Witnesses {
		c, err := witness.NewClient(w.URL, w.Key, hc)
		if err != nil {
			return err
		}
		ws = append(ws, c)
	}
	opts := []witness.Option{witness.WithLogger(d.log), witness.WithMetrics(reg)}
	if d.lease != nil {
		opts = append(opts, witness.WithLease(d.lease))
	}
	st := store.AuditStorage(d.store)
	c, err := witness.New(l, st, d.checkpoints, ws, opts...)
	if err != nil {
		return err
	}
	d.cosigner, d.published = c, witness.NewPublished(l, st)
	return nil
}

// auditLog is the log the API serves: with witnesses, its checkpoint
// carries their cosignatures.
func (d *Daemon) auditLog() server.AuditLog {
	if d.published == nil {
		return d.audit
	}
	return cosignedLog{d.audit, d.published}
}

// cosignedLog is the audit log with the published checkpoint.
type cosignedLog struct {
	*liveLog
	published *witness.Published
}

func (c cosignedLog) Checkpoint(ctx context.Context) ([]byte, error) {
	return c.published.Checkpoint(ctx)
}
