package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sigil-dev/sigil/internal/config"
	"github.com/sigil-dev/sigil/internal/store/backend"
	"github.com/sigil-dev/sigil/internal/trust"
	"github.com/sigil-dev/sigil/policy"
)

// trustWatch is sigild's side of internal/trust: the fleet re-evaluated on
// every policy set that takes effect (gate and apply in the policy engine),
// a set above policy.max_revoke_fraction held loudly (log, metric, /readyz),
// and the attestation.max_age sweep.
type trustWatch struct {
	reeval *trust.Reevaluator
	sweep  *trust.Sweeper
	held   *prometheus.GaugeVec
	line   atomic.Pointer[string] // /readyz's policy_held line, "" when none
}

func (d *Daemon) openTrust(reg prometheus.Registerer) error {
	tw := &trustWatch{held: prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "sigil_policy_held",
		Help: "1, labelled with its version, while a new policy set is held for an operator's confirmation (policy.max_revoke_fraction).",
	}, []string{"version"})}
	if err := reg.Register(tw.held); err != nil {
		return fmt.Errorf("daemon: register policy hold metric: %w", err)
	}
	tw.reeval = &trust.Reevaluator{
		Store: d.store, Verifier: d.verify, MaxRevokeFraction: d.cfg.Policy.MaxRevokeFraction,
		Log: d.log, Nudge: d.audit.Nudge, OnHold: tw.onHold,
	}
	tw.sweep = &trust.Sweeper{Store: d.store, MaxAge: d.cfg.Attestation.MaxAge, Log: d.log, Nudge: d.audit.Nudge}
	d.trust = tw
	return nil
}

// onHold exports the held plan, or that none is held.
func (tw *trustWatch) onHold(p *trust.Plan) {
	tw.held.Reset()
	line := ""
	if p != nil {
		tw.held.WithLabelValues(p.Version).Set(1)
		line = (&trust.HeldError{Plan: *p, Fraction: tw.reeval.MaxRevokeFraction}).Error()
		line = p.Version + " " + line
	}
	tw.line.Store(&line)
}

// heldLine is /readyz's policy_held line.
func (tw *trustWatch) heldLine() string {
	if l := tw.line.Load(); l != nil {
		return *l
	}
	return ""
}

// run sweeps devices overdue for attestation, one replica at a time, and
// retries a policy application that failed, until ctx ends.
func (tw *trustWatch) run(ctx context.Context) error {
	t := time.NewTicker(trust.SweepInterval(tw.sweep.MaxAge))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if _, err := tw.sweep.SweepShared(ctx); err != nil && ctx.Err() == nil {
			tw.sweep.Log.ErrorContext(ctx, "attestation sweep failed; retrying at the next round", "err", err)
		}
		tw.reeval.Retry(ctx)
	}
}

// ConfirmPolicy applies the policy set in policy.dir to the fleet, held or
// not (`sigild policy confirm`): the operator names its version, as
// `sigil policy what-if` or the hold reported it, so that what is applied
// is what was reviewed. Running replicas holding that set let it take
// effect at their next poll. It opens no HSM: revocations need none, and
// the running service signs the checkpoint covering them.
func ConfirmPolicy(ctx context.Context, cfg *config.Config, log *slog.Logger, version string) (trust.Applied, error) {
	set, err := policy.Load(cfg.Policy.Dir)
	if err != nil {
		return trust.Applied{}, err
	}
	if set.Version() != version {
		return trust.Applied{}, fmt.Errorf("daemon: policy.dir %s holds policy set %s, not %s: review what it would revoke (sigil policy what-if) and confirm that version", cfg.Policy.Dir, set.Version(), version)
	}
	v, err := verifier(cfg.Attestation)
	if err != nil {
		return trust.Applied{}, err
	}
	st, err := backend.Open(ctx, cfg.Store)
	if err != nil {
		return trust.Applied{}, err
	}
	defer st.Close()
	r := &trust.Reevaluator{Store: st, Verifier: v, MaxRevokeFraction: cfg.Policy.MaxRevokeFraction, Log: log}
	return r.Apply(ctx, set, true)
}
