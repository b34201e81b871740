package trust_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/internal/trust"
	"github.com/sigil-dev/sigil/policy"
)

// A policy set that forbids one device: the plan (what-if) names exactly
// that device's certificate and changes nothing; applying it revokes
// exactly that certificate and its tokens, each audited with the set's
// version and the decision; applying it again does nothing.
func TestPolicyChangeRevokesWhatItNoLongerPermits(t *testing.T) {
	t.Parallel()
	f := newFleet(t, 3, "")
	victim := f.devices[1]
	boundToken(t, f.store, victim.cert, "jti-victim")
	r := &trust.Reevaluator{Store: f.store, Verifier: f.verifier, MaxRevokeFraction: trust.DefaultMaxRevokeFraction}
	ctx := t.Context()
	if _, err := r.Apply(ctx, f.svc.Policy.(*policy.Set), false); err != nil {
		t.Fatalf("applying the policy the fleet enrolled under: %v", err)
	}
	set := policyWith(t, forbidDevice(victim.ekHash))

	plan, err := r.Plan(ctx, set, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if plan.Devices != 3 || plan.Certificates != 3 || len(plan.Revoke) != 1 || plan.Revoke[0].Serial != victim.serial ||
		plan.Revoke[0].EKHash != victim.ekHash || !strings.Contains(plan.Revoke[0].Decision, "forbid-") {
		t.Fatalf("plan = %+v; want 3 devices evaluated and exactly %s's certificate %s revoked", plan, victim.ekHash, victim.serial)
	}
	if c := f.certificate(t, victim); c.RevokedAt != nil {
		t.Fatal("planning revoked the certificate")
	}

	a, err := r.Apply(ctx, set, false)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(a.Revoked.Certificates, []string{victim.serial}) || !slices.Equal(a.Revoked.Tokens, []string{"jti-victim"}) {
		t.Fatalf("Apply revoked %+v; want exactly %s and its token", a.Revoked, victim.serial)
	}
	for _, m := range f.devices {
		c := f.certificate(t, m)
		if revoked := c.RevokedAt != nil; revoked != (m == victim) || (revoked && c.RevocationReason != store.ReasonPolicyChanged) {
			t.Errorf("certificate of %s: revoked at %v (%q)", m.ekHash, c.RevokedAt, c.RevocationReason)
		}
	}
	logged := revokedEntries(t, f.store)
	if len(logged) != 1 || logged[0].Serial != victim.serial || logged[0].PolicyVersion != set.Version() ||
		logged[0].Reason != store.ReasonPolicyChanged || !strings.Contains(logged[0].Decision, "forbid-") {
		t.Fatalf("revocations logged: %+v; want one for %s with policy version %s and the decision", logged, victim.serial, set.Version())
	}
	if again, err := r.Apply(ctx, set, false); err != nil || !again.Skipped {
		t.Errorf("applying the same set again: %+v, %v; want skipped", again, err)
	}
	if p, err := f.store.AppliedPolicy(ctx); err != nil || p.Version != set.Version() || p.Seq != 2 {
		t.Errorf("AppliedPolicy = %+v, %v; want seq 2, version %s", p, err, set.Version())
	}
}

// A policy set that would revoke more than max_revoke_fraction of the
// fleet (a typo that forbids every device) is held: the gate refuses it,
// loudly, with the plan, nothing is revoked; once confirmed it applies,
// and the gate lets it through on every replica.
func TestPolicyChangeAboveFractionIsHeld(t *testing.T) {
	t.Parallel()
	f := newFleet(t, 3, "")
	var held []*trust.Plan
	r := &trust.Reevaluator{Store: f.store, Verifier: f.verifier, MaxRevokeFraction: 0.5,
		OnHold: func(p *trust.Plan) { held = append(held, p) }}
	ctx := t.Context()
	base := f.svc.Policy.(*policy.Set)
	r.Active(ctx, base) // the set in effect
	set := policyWith(t, forbidDevFirmware)

	var he *trust.HeldError
	if _, err := r.Apply(ctx, set, false); !errors.As(err, &he) || len(he.Plan.Revoke) != 3 || !strings.Contains(err.Error(), "sigild policy confirm") {
		t.Fatalf("Apply = %v; want a HeldError for 3 certificates saying how to confirm", err)
	}
	if err := r.Gate(ctx, set); !errors.As(err, &he) {
		t.Fatalf("Gate = %v; want it held", err)
	}
	if err := r.Gate(ctx, set); !errors.As(err, &he) {
		t.Fatalf("Gate again = %v; want it held", err)
	}
	if len(held) != 1 || held[0] == nil || held[0].Version != set.Version() || r.Held() == nil {
		t.Fatalf("OnHold calls %v; want the plan once", held)
	}
	for _, m := range f.devices {
		if c := f.certificate(t, m); c.RevokedAt != nil {
			t.Fatalf("certificate %s revoked by a held set", m.serial)
		}
	}
	// Withdrawn (the directory back to the set in effect): the hold is
	// released; offered again, held again.
	if err := r.Gate(ctx, base); err != nil || r.Held() != nil {
		t.Fatalf("Gate of the set in effect = %v, held %v; want the hold released", err, r.Held())
	}
	if err := r.Gate(ctx, set); !errors.As(err, &he) || len(held) != 3 {
		t.Fatalf("Gate = %v after %d OnHold calls; want held again", err, len(held))
	}
	// The operator confirms (sigild policy confirm): another handle, as
	// from another process.
	confirm := &trust.Reevaluator{Store: f.store, Verifier: f.verifier, MaxRevokeFraction: 0.5}
	a, err := confirm.Apply(ctx, set, true)
	if err != nil || len(a.Revoked.Certificates) != 3 {
		t.Fatalf("confirmed Apply = %+v, %v; want 3 certificates revoked", a, err)
	}
	if err := r.Gate(ctx, set); err != nil {
		t.Fatalf("Gate after the confirmation = %v; want the set let through", err)
	}
	if len(held) != 4 || held[3] != nil || r.Held() != nil {
		t.Errorf("OnHold calls %v; want the hold released", held)
	}
}

// A device that has not attested within max_age loses its certificates
// and their tokens (attestation-expired, audited); one that attested
// within it keeps them; a second sweep finds nothing.
func TestSweepRevokesDevicesOverdueForAttestation(t *testing.T) {
	t.Parallel()
	now := time.Now()
	f := newFleet(t, 2, "", now.Add(-30*time.Minute))
	stale, fresh := f.devices[0], f.devices[1]
	boundToken(t, f.store, stale.cert, "jti-stale")
	s := &trust.Sweeper{Store: f.store, MaxAge: 10 * time.Minute}
	got, err := s.Sweep(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.Certificates, []string{stale.serial}) || !slices.Equal(got.Tokens, []string{"jti-stale"}) {
		t.Fatalf("Sweep revoked %+v; want exactly %s and its token", got, stale.serial)
	}
	if c := f.certificate(t, stale); c.RevocationReason != store.ReasonAttestationExpired {
		t.Errorf("stale certificate revoked with %q", c.RevocationReason)
	}
	if c := f.certificate(t, fresh); c.RevokedAt != nil {
		t.Error("the device that attested within max_age lost its certificate")
	}
	logged := revokedEntries(t, f.store)
	if len(logged) != 1 || logged[0].Reason != store.ReasonAttestationExpired || !strings.Contains(logged[0].Decision, "attestation.max_age") {
		t.Errorf("revocations logged: %+v", logged)
	}
	if again, err := s.Sweep(t.Context()); err != nil || len(again.Certificates) != 0 {
		t.Errorf("second sweep: %+v, %v; want nothing", again, err)
	}
}

// A certificate decided under the previous set but recorded after the new
// one was applied (a renewal in flight during the reload) is judged by
// Stragglers and revoked if the new set forbids it; a set not applied
// judges nothing.
func TestStragglersOfAnApplication(t *testing.T) {
	t.Parallel()
	f := newFleet(t, 1, "")
	r := &trust.Reevaluator{Store: f.store, Verifier: f.verifier, MaxRevokeFraction: 1}
	ctx := t.Context()
	set := policyWith(t, `@id("no-late")
forbid (principal, action, resource) when { resource == Sigil::Identity::"`+workload("late")+`" };
`)
	if a, err := r.Apply(ctx, set, false); err != nil || len(a.Revoked.Certificates) != 0 {
		t.Fatalf("Apply = %+v, %v; want nothing revoked", a, err)
	}
	late := enrollTPM(t, f.svc, f.ekCA, workload("late")) // decided by the old set, still f.svc's
	other := &trust.Reevaluator{Store: f.store, Verifier: f.verifier, MaxRevokeFraction: 1}
	if got, err := other.Stragglers(ctx, policyWith(t, forbidDevFirmware)); err != nil || len(got.Certificates) != 0 {
		t.Fatalf("Stragglers of a set not applied = %+v, %v; want nothing", got, err)
	}
	got, err := other.Stragglers(ctx, set)
	if err != nil || !slices.Equal(got.Certificates, []string{late.serial}) {
		t.Fatalf("Stragglers = %+v, %v; want %s revoked", got, err, late.serial)
	}
	if c := f.certificate(t, late); c.RevocationReason != store.ReasonPolicyChanged {
		t.Errorf("straggler revoked with %q", c.RevocationReason)
	}
}
