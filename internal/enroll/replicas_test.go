package enroll_test

import (
	"errors"
	"sync"
	"testing"

	"github.com/sigil-dev/sigil/internal/enroll"
	"github.com/sigil-dev/sigil/internal/store/backend"
	"github.com/sigil-dev/sigil/testenv"
)

// TestChallengeAcrossReplicasOnPostgres: with replicas sharing one
// PostgreSQL database, a challenge issued by replica A completes on
// replica B, and a challenge stays single-use across replicas: of 16
// concurrent completions spread over three replicas, exactly one succeeds
// and the others are ErrChallengeUsed.
func TestChallengeAcrossReplicasOnPostgres(t *testing.T) {
	d := newDevice(t, testenv.DevMeasurements())
	srv := newServer(t, d.sw.EKCA.Cert, withStore(testenv.PostgresDB(t)))
	ctx := testCtx(t)
	services := []*enroll.Service{srv.svc}
	for range 2 {
		st, err := backend.Open(ctx, srv.dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		other := *srv.svc
		other.Store = st
		services = append(services, &other)
	}
	ak := d.newAK(t)
	a := d.begin(t, services[0], ak, workload("a"))
	if _, err := services[1].Complete(ctx, a.req); err != nil {
		t.Fatalf("a challenge issued by replica A, completed on B: %v", err)
	}

	a = d.begin(t, services[0], ak, workload("a"))
	const n = 16
	errs := make([]error, n)
	issued := make([]*enroll.Issued, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for g := range n {
		svc := services[g%len(services)]
		wg.Go(func() {
			<-start
			issued[g], errs[g] = svc.Complete(ctx, a.req)
		})
	}
	close(start)
	wg.Wait()
	ok := 0
	for g, err := range errs {
		switch {
		case err == nil && issued[g] != nil:
			ok++
		case !errors.Is(err, enroll.ErrChallengeUsed):
			t.Errorf("completion %d: %v, want ErrChallengeUsed", g, err)
		}
	}
	if ok != 1 {
		t.Errorf("%d completions succeeded, want exactly 1", ok)
	}
	if got := deviceCertificates(t, srv.store, ekHashOf(d)); got != 2 {
		t.Errorf("%d certificates stored after two challenges, want 2", got)
	}
}
