package enroll_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/sigil-dev/sigil/api"
	"github.com/sigil-dev/sigil/internal/enroll"
	"github.com/sigil-dev/sigil/internal/store/backend"
	"github.com/sigil-dev/sigil/testenv"
)

// replicas returns srv's Service and n more, each a copy on its own
// connection to the same database, as several sigild processes share one.
func replicas(t *testing.T, srv *server, n int) []*enroll.Service {
	t.Helper()
	services := []*enroll.Service{srv.svc}
	for range n {
		st, err := backend.Open(context.Background(), srv.dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		other := *srv.svc
		other.Store = st
		services = append(services, &other)
	}
	return services
}

// TestRenewChallengeAttacks: a stateless renewal challenge is accepted once,
// by any replica, only from the certificate it was issued to, and only as
// this server MAC'd it.
func TestRenewChallengeAttacks(t *testing.T) {
	t.Parallel()
	d, d2, srv := twoDevices(t) // d2 holds another identity on the same server
	ctx := testCtx(t)
	a, iss := d.enroll(t, srv.svc, workload("a"))
	cert := leaf(t, iss)
	a2, iss2 := d2.enroll(t, srv.svc, workload("b"))
	cert2 := leaf(t, iss2)
	svc := replicas(t, srv, 1)

	challenge := func(t *testing.T, svc *enroll.Service) *api.Challenge {
		t.Helper()
		ch, err := svc.RenewChallenge(ctx, cert)
		if err != nil {
			t.Fatalf("RenewChallenge: %v", err)
		}
		return ch
	}
	refused := func(t *testing.T, err, want error) {
		t.Helper()
		if err == nil || !errors.Is(err, want) {
			t.Fatalf("renewal = %v, want %v", err, want)
		}
	}

	t.Run("issued by one replica, accepted once by another", func(t *testing.T) {
		ch := challenge(t, svc[0])
		req := renewRequest(t, a, ch)
		if _, err := svc[1].Renew(ctx, cert, req); err != nil {
			t.Fatalf("renewal on the other replica: %v", err)
		}
		_, err := svc[1].Renew(ctx, cert, req)
		refused(t, err, enroll.ErrChallengeUsed)
		_, err = svc[0].Renew(ctx, cert, req)
		refused(t, err, enroll.ErrChallengeUsed)
	})
	t.Run("failed attempt burns the challenge", func(t *testing.T) {
		ch := challenge(t, svc[0])
		bad := renewRequest(t, a, ch)
		bad.Platform = quote(t, a.ak, randomNonce(t))
		if _, err := svc[0].Renew(ctx, cert, bad); err == nil {
			t.Fatal("a quote over another nonce renewed")
		}
		_, err := svc[1].Renew(ctx, cert, renewRequest(t, a, ch))
		refused(t, err, enroll.ErrChallengeUsed)
		// A burnt challenge is refused before its evidence is looked at.
		_, err = svc[0].Renew(ctx, cert, bad)
		refused(t, err, enroll.ErrChallengeUsed)
	})
	t.Run("challenge for another device", func(t *testing.T) {
		ch2, err := svc[0].RenewChallenge(ctx, cert2)
		if err != nil {
			t.Fatal(err)
		}
		// The device's own quote and CSR over the other device's challenge.
		_, err = svc[0].Renew(ctx, cert, renewRequest(t, a, ch2))
		refused(t, err, enroll.ErrBadRequest)
		// The challenge was not burnt: its device still renews with it.
		if _, err := svc[0].Renew(ctx, cert2, renewRequest(t, a2, ch2)); err != nil {
			t.Errorf("renewal by the device the challenge is for: %v", err)
		}
	})
	t.Run("forged MAC", func(t *testing.T) {
		ch := challenge(t, svc[0])
		id := []byte(ch.ID)
		last := len(id) - 2 // the last character holds padding bits only in part
		id[last] = map[bool]byte{true: 'B', false: 'A'}[id[last] == 'A']
		forged := *ch
		forged.ID = string(id)
		_, err := svc[0].Renew(ctx, cert, renewRequest(t, a, &forged))
		refused(t, err, enroll.ErrBadRequest)
	})
	t.Run("truncated MAC", func(t *testing.T) {
		ch := challenge(t, svc[0])
		truncated := *ch
		truncated.ID = ch.ID[:len(ch.ID)-4]
		_, err := svc[0].Renew(ctx, cert, renewRequest(t, a, &truncated))
		refused(t, err, enroll.ErrUnknownChallenge)
	})
	if n := deviceCertificates(t, srv.store, ekHashOf(d)); n != 2 {
		t.Errorf("%d certificates of the device stored, want 2 (enrollment, one renewal)", n)
	}
}

// TestRenewChallengeAcrossReplicasOnPostgres: with replicas sharing one
// PostgreSQL database, a renewal challenge issued by replica A renews on
// B, and stays single-use across replicas: of 12 concurrent renewals spread
// over three replicas, exactly one succeeds and the others are
// ErrChallengeUsed.
func TestRenewChallengeAcrossReplicasOnPostgres(t *testing.T) {
	d := newDevice(t, testenv.DevMeasurements())
	srv := newServer(t, d.sw.EKCA.Cert, withStore(testenv.PostgresDB(t)))
	ctx := testCtx(t)
	a, iss := d.enroll(t, srv.svc, workload("a"))
	cert := leaf(t, iss)
	services := replicas(t, srv, 2)

	ch, err := services[0].RenewChallenge(ctx, cert)
	if err != nil {
		t.Fatal(err)
	}
	req := renewRequest(t, a, ch)
	if _, err := services[1].Renew(ctx, cert, req); err != nil {
		t.Fatalf("a challenge issued by replica A, renewed on B: %v", err)
	}
	if _, err := services[2].Renew(ctx, cert, req); !errors.Is(err, enroll.ErrChallengeUsed) {
		t.Fatalf("replayed on replica C: %v, want ErrChallengeUsed", err)
	}

	ch, err = services[2].RenewChallenge(ctx, cert)
	if err != nil {
		t.Fatal(err)
	}
	req = renewRequest(t, a, ch)
	const n = 12
	errs := make([]error, n)
	issued := make([]*enroll.Issued, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for g := range n {
		svc := services[g%len(services)]
		wg.Go(func() {
			<-start
			issued[g], errs[g] = svc.Renew(ctx, cert, req)
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
			t.Errorf("renewal %d: %v, want ErrChallengeUsed", g, err)
		}
	}
	if ok != 1 {
		t.Errorf("%d renewals succeeded, want exactly 1", ok)
	}
	if got := deviceCertificates(t, srv.store, ekHashOf(d)); got != 3 {
		t.Errorf("%d certificates stored after enrollment and two renewals, want 3", got)
	}
}
