package trust_test

import (
	"sync"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/internal/store/backend"
	"github.com/sigil-dev/sigil/internal/trust"
	"github.com/sigil-dev/sigil/testenv"
)

// On replicas sharing one PostgreSQL database, a policy change is applied
// once and an overdue device swept once: three replicas applying the same
// new set and sweeping at the same moment revoke each certificate once,
// with one audit entry each, and one of them evaluates and records the
// application.
func TestReplicasApplyAndSweepOnceOnPostgres(t *testing.T) {
	now := time.Now()
	f := newFleet(t, 3, testenv.PostgresDB(t), time.Time{}, now.Add(-30*time.Minute), now.Add(-30*time.Minute))
	ctx := t.Context()
	base := &trust.Reevaluator{Store: f.store, Verifier: f.verifier, MaxRevokeFraction: 1}
	set := policyWith(t, forbidDevice(f.devices[0].ekHash))
	if _, err := base.Apply(ctx, policyWith(t, ""), false); err != nil {
		t.Fatal(err)
	}
	before, err := f.store.AppliedPolicy(ctx)
	if err != nil {
		t.Fatal(err)
	}

	var wg sync.WaitGroup
	start := make(chan struct{})
	var mu sync.Mutex
	var applied, swept []string
	evaluated := 0
	for range 3 {
		st, err := backend.Open(ctx, f.dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		r := &trust.Reevaluator{Store: st, Verifier: f.verifier, MaxRevokeFraction: 1}
		s := &trust.Sweeper{Store: st, MaxAge: 10 * time.Minute}
		wg.Go(func() {
			<-start
			a, err := r.Apply(ctx, set, false)
			if err != nil {
				t.Errorf("Apply: %v", err)
			}
			mu.Lock()
			applied = append(applied, a.Revoked.Certificates...)
			if !a.Skipped {
				evaluated++
			}
			mu.Unlock()
		})
		wg.Go(func() {
			<-start
			got, err := s.Sweep(ctx) // without the lock: the store alone must keep it exactly once
			if err != nil {
				t.Errorf("Sweep: %v", err)
			}
			mu.Lock()
			swept = append(swept, got.Certificates...)
			mu.Unlock()
		})
	}
	close(start)
	wg.Wait()

	if len(applied) != 1 || applied[0] != f.devices[0].serial {
		t.Errorf("the policy change revoked %v across replicas; want %s once", applied, f.devices[0].serial)
	}
	if len(swept) != 2 {
		t.Errorf("the sweeps revoked %v across replicas; want the two overdue devices' certificates once each", swept)
	}
	counts := map[string]int{}
	for _, e := range revokedEntries(t, f.store) {
		counts[e.Serial]++
	}
	for _, m := range f.devices {
		if counts[m.serial] != 1 {
			t.Errorf("certificate %s has %d revocation entries, want 1", m.serial, counts[m.serial])
		}
		if c := f.certificate(t, m); c.RevokedAt == nil {
			t.Errorf("certificate %s not revoked", m.serial)
		}
	}
	if p, err := f.store.AppliedPolicy(ctx); err != nil || p.Seq != before.Seq+1 || p.Version != set.Version() {
		t.Errorf("AppliedPolicy = %+v, %v; want one application after seq %d", p, err, before.Seq)
	}
	if evaluated != 1 {
		t.Errorf("%d replicas re-evaluated the fleet, want 1 (the others skip the set applied)", evaluated)
	}
}
