package trust

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/sigil-dev/sigil/attest"
	"github.com/sigil-dev/sigil/internal/device"
	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/policy"
)

// applyLock serialises policy applications across replicas; the store's
// fence (PutAppliedPolicy) keeps the last word.
const applyLock = "sigil/policy-apply"

// DefaultMaxRevokeFraction is policy.max_revoke_fraction's default.
const DefaultMaxRevokeFraction = 0.2

// HeldError: a policy set would revoke more than MaxRevokeFraction of the
// fleet and waits for an operator. Keep the active set; tell the operator
// what it would revoke and how to confirm it (Confirm, `sigild policy
// confirm`).
type HeldError struct {
	Plan     Plan
	Fraction float64
}

func (e *HeldError) Error() string {
	return fmt.Sprintf("it would revoke %d of %d devices (%d certificates), more than policy.max_revoke_fraction %g: "+
		"review it with `sigil policy what-if`, then confirm it with `sigild policy confirm --config FILE %s`, or restore the previous policy",
		len(e.Plan.RevokedDevices()), e.Plan.Devices, len(e.Plan.Revoke), e.Fraction, e.Plan.Version)
}

// Applied is what applying a policy set did.
type Applied struct {
	Plan    Plan
	Revoked store.Revoked
	Seq     uint64 // the application's, in the store
	// Skipped is true when the set was the one applied last (by another
	// replica, or before a restart): nothing was evaluated or revoked.
	Skipped bool
}

// Reevaluator re-evaluates the fleet under each policy set that takes
// effect and revokes what it no longer permits. Wire Gate and Active into
// the policy engine (policy.WithGate, policy.WithOnActive) and call Retry
// periodically. It is safe for concurrent use.
type Reevaluator struct {
	Store             store.Store
	Verifier          *attest.Verifier
	MaxRevokeFraction float64
	Log               *slog.Logger
	Now               func() time.Time // nil: time.Now
	Nudge             func()           // nil, or asks the audit log for a checkpoint
	// OnHold, if set, is called with the plan of a set the gate holds, and
	// with nil once none is held: for metrics and /readyz.
	OnHold func(*Plan)

	mu       sync.Mutex
	inEffect string // the version of the set Active was last called with
	held     *Plan
	gated    *Plan     // the plan Gate let a set through on, for Active to apply
	pending  PolicySet // a set in effect whose application failed, for Retry
	recheck  *recheck  // a set applied, whose stragglers Retry judges
}

// requestGrace bounds how long a decision may take to be recorded: a
// renewal or enrollment decided under the previous set just before the new
// one took effect records its certificate, under the old version, after
// the application planned. Retry judges such stragglers requestGrace after
// the application (sigild's requests time out well within it).
const requestGrace = 40 * time.Second

type recheck struct {
	set PolicySet
	due time.Time
}

func (r *Reevaluator) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// Plan is what set would revoke now, changing nothing (Planner.Plan).
func (r *Reevaluator) Plan(ctx context.Context, set PolicySet, now time.Time) (Plan, error) {
	return Planner{Store: r.Store, Verifier: r.Verifier}.Plan(ctx, set, now)
}

// Apply re-evaluates the fleet under set and, in one transaction, records
// the application and revokes every certificate set no longer permits
// (store.ReasonPolicyChanged, the decision and set's version in each audit
// entry), with the tokens bound to them. Across replicas it runs once per
// change: under a lock, and skipped when set is the one applied last. A
// plan that exceeds MaxRevokeFraction is a *HeldError unless confirmed.
func (r *Reevaluator) Apply(ctx context.Context, set PolicySet, confirmed bool) (Applied, error) {
	return r.applyPlanned(ctx, set, confirmed, nil)
}

// applyPlanned is Apply, on planned if it is set's plan rather than
// evaluating the fleet again: the gate's, made just before set took
// effect. What was recorded since under the previous set, Stragglers
// judges requestGrace later; what was revoked since, revokePlan skips.
func (r *Reevaluator) applyPlanned(ctx context.Context, set PolicySet, confirmed bool, planned *Plan) (Applied, error) {
	unlock, err := r.lock(ctx)
	if err != nil {
		return Applied{}, err
	}
	defer unlock()
	prev, err := r.applied(ctx)
	if err != nil {
		return Applied{}, err
	}
	if prev.Version == set.Version() {
		return Applied{Seq: prev.Seq, Skipped: true}, nil
	}
	now := r.now()
	var plan Plan
	if planned != nil && planned.Version == set.Version() {
		plan = *planned
	} else if plan, err = r.Plan(ctx, set, now); err != nil {
		return Applied{}, err
	}
	if !confirmed && plan.Exceeds(r.MaxRevokeFraction) {
		return Applied{Plan: plan}, &HeldError{Plan: plan, Fraction: r.MaxRevokeFraction}
	}
	a := Applied{Plan: plan, Seq: prev.Seq + 1}
	err = r.Store.Tx(ctx, func(tx store.Tx) error {
		if err := tx.PutAppliedPolicy(ctx, store.AppliedPolicy{Seq: a.Seq, Version: set.Version(), AppliedAt: now}); err != nil {
			return err
		}
		var err error
		a.Revoked, err = revokePlan(ctx, tx, plan, now)
		return err
	})
	if errors.Is(err, store.ErrConflict) {
		return Applied{Skipped: true}, nil // another replica applied a set first
	}
	if err != nil {
		return Applied{}, fmt.Errorf("trust: apply policy set %s: %w", set.Version(), err)
	}
	if r.Nudge != nil {
		r.Nudge()
	}
	r.log().WarnContext(ctx, "policy set applied to the fleet", "version", set.Version(), "seq", a.Seq,
		"devices", plan.Devices, "certificates", plan.Certificates, "revoked_certificates", a.Revoked.Certificates,
		"revoked_tokens", len(a.Revoked.Tokens), "unverifiable", len(plan.Unverifiable))
	return a, nil
}

// revokePlan revokes, in tx, each certificate of the plan still current.
func revokePlan(ctx context.Context, tx store.Tx, plan Plan, now time.Time) (store.Revoked, error) {
	var all store.Revoked
	for _, rv := range plan.Revoke {
		c, err := tx.Certificate(ctx, rv.Serial)
		if err != nil {
			return store.Revoked{}, fmt.Errorf("trust: certificate %s: %w", rv.Serial, err)
		}
		d := device.Distrust{Reason: store.ReasonPolicyChanged, Decision: rv.Decision, PolicyVersion: plan.Version, PolicyIDs: rv.PolicyIDs}
		got, err := d.Revoke(ctx, tx, []store.Certificate{c}, now)
		if err != nil {
			return store.Revoked{}, err
		}
		all.Certificates = append(all.Certificates, got.Certificates...)
		all.Tokens = append(all.Tokens, got.Tokens...)
	}
	return all, nil
}

// Gate is for policy.WithGate. It lets a loaded set take effect if it is
// the set in effect (a held set was withdrawn), the set applied last (by
// another replica, or confirmed by `sigild policy confirm`), or would
// revoke certificates of no more than MaxRevokeFraction of the fleet's
// devices (Plan.Exceeds); else it holds it with a *HeldError. A hold is
// logged once, at error level, and reported to OnHold; the engine offers
// the set again at every poll, and it passes once applied.
func (r *Reevaluator) Gate(ctx context.Context, set *policy.Set) error {
	r.mu.Lock()
	inEffect := r.inEffect == set.Version()
	r.mu.Unlock()
	if inEffect { // the held set was withdrawn
		r.hold(ctx, nil)
		return nil
	}
	prev, err := r.applied(ctx)
	if err != nil {
		return err
	}
	if prev.Version == set.Version() {
		r.hold(ctx, nil)
		return nil
	}
	r.mu.Lock()
	held := r.held
	r.mu.Unlock()
	if held != nil && held.Version == set.Version() {
		return &HeldError{Plan: *held, Fraction: r.MaxRevokeFraction}
	}
	plan, err := r.Plan(ctx, set, r.now())
	if err != nil {
		return err
	}
	if plan.Exceeds(r.MaxRevokeFraction) {
		r.hold(ctx, &plan)
		return &HeldError{Plan: plan, Fraction: r.MaxRevokeFraction}
	}
	r.hold(ctx, nil)
	r.mu.Lock()
	r.gated = &plan
	r.mu.Unlock()
	return nil
}

// Active is for policy.WithOnActive: it applies a set that has just taken
// effect (the gate let it through), on the plan the gate made of it. A
// failure is logged and retried by Retry.
func (r *Reevaluator) Active(ctx context.Context, set *policy.Set) {
	r.mu.Lock()
	r.inEffect = set.Version()
	planned := r.gated
	r.gated = nil
	r.mu.Unlock()
	r.apply(ctx, set, planned)
}

// Retry applies the set in effect again if its application failed, and,
// requestGrace after an application, judges its stragglers (Stragglers).
func (r *Reevaluator) Retry(ctx context.Context) {
	r.mu.Lock()
	set, rc := r.pending, r.recheck
	if rc != nil && r.now().After(rc.due) {
		r.recheck = nil
	}
	r.mu.Unlock()
	if set != nil {
		r.apply(ctx, set, nil)
	}
	if rc != nil && r.now().After(rc.due) {
		if _, err := r.Stragglers(ctx, rc.set); err != nil {
			r.log().ErrorContext(ctx, "policy set applied, but the certificates recorded meanwhile under the previous one were not judged", "version", rc.set.Version(), "err", err)
		}
	}
}

// Stragglers judges, under set, the current certificates recorded under
// another policy set version — decided under the previous set while set
// was being applied — and revokes those set does not permit, as Apply
// does. It does nothing unless set is the one applied last.
func (r *Reevaluator) Stragglers(ctx context.Context, set PolicySet) (store.Revoked, error) {
	unlock, err := r.lock(ctx)
	if err != nil {
		return store.Revoked{}, err
	}
	defer unlock()
	if prev, err := r.applied(ctx); err != nil || prev.Version != set.Version() {
		return store.Revoked{}, err
	}
	now := r.now()
	pl := Planner{Store: r.Store, Verifier: r.Verifier, Only: func(c store.Certificate) bool { return c.PolicyVersion != set.Version() }}
	plan, err := pl.Plan(ctx, set, now)
	if err != nil || len(plan.Revoke) == 0 {
		return store.Revoked{}, err
	}
	var revoked store.Revoked
	err = r.Store.Tx(ctx, func(tx store.Tx) error {
		var err error
		revoked, err = revokePlan(ctx, tx, plan, now)
		return err
	})
	if err != nil {
		return store.Revoked{}, fmt.Errorf("trust: judge stragglers of policy set %s: %w", set.Version(), err)
	}
	if len(revoked.Certificates) > 0 {
		if r.Nudge != nil {
			r.Nudge()
		}
		r.log().WarnContext(ctx, "certificates recorded under the previous policy set revoked", "version", set.Version(),
			"certificates", revoked.Certificates, "tokens", len(revoked.Tokens))
	}
	return revoked, nil
}

// apply applies set, in effect, on planned if it is set's plan (the gate's).
func (r *Reevaluator) apply(ctx context.Context, set PolicySet, planned *Plan) {
	_, err := r.applyPlanned(ctx, set, true, planned)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.pending = set
		r.log().ErrorContext(ctx, "policy set in effect but not yet applied to the fleet; retrying", "version", set.Version(), "err", err)
		return
	}
	if r.pending == set {
		r.pending = nil
	}
	r.recheck = &recheck{set: set, due: r.now().Add(requestGrace)}
}

// Held returns the plan of the set the gate holds, if any.
func (r *Reevaluator) Held() *Plan {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.held
}

func (r *Reevaluator) hold(ctx context.Context, p *Plan) {
	r.mu.Lock()
	changed := (p == nil) != (r.held == nil) || (p != nil && p.Version != r.held.Version)
	r.held = p
	r.mu.Unlock()
	if !changed {
		return
	}
	if p != nil {
		r.log().ErrorContext(ctx, "policy set HELD: it would revoke too much of the fleet; the active set stays",
			"version", p.Version, "devices", p.Devices, "revoked_devices", len(p.RevokedDevices()),
			"revoked_certificates", len(p.Revoke), "max_revoke_fraction", r.MaxRevokeFraction,
			"confirm", "sigild policy confirm --config FILE "+p.Version)
	}
	if r.OnHold != nil {
		r.OnHold(p)
	}
}

// applied reads the application stored last; the zero value before the
// first.
func (r *Reevaluator) applied(ctx context.Context) (store.AppliedPolicy, error) {
	p, err := r.Store.AppliedPolicy(ctx)
	if errors.Is(err, store.ErrNotFound) {
		return store.AppliedPolicy{}, nil
	}
	if err != nil {
		return store.AppliedPolicy{}, fmt.Errorf("trust: %w", err)
	}
	return p, nil
}

// lock takes applyLock when replicas share the store.
func (r *Reevaluator) lock(ctx context.Context) (func(), error) {
	lk, ok := r.Store.(store.Locker)
	if !ok {
		return func() {}, nil
	}
	l, err := lk.Lock(ctx, applyLock)
	if err != nil {
		return nil, fmt.Errorf("trust: wait for another replica's policy application: %w", err)
	}
	return l.Unlock, nil
}

func (r *Reevaluator) log() *slog.Logger {
	if r.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return r.Log
}
