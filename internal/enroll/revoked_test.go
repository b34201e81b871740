package enroll_test

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/internal/device"
	"github.com/sigil-dev/sigil/internal/enroll"
	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/policy"
	"github.com/sigil-dev/sigil/testenv"
)

// duringDecision runs do once, when policy is asked, between the checks
// before the evidence is verified and the transaction that records.
type duringDecision struct {
	enroll.Decider
	once sync.Once
	do   func()
}

func (d *duringDecision) Decide(r policy.Request) policy.Decision {
	d.once.Do(d.do)
	return d.Decider.Decide(r)
}

// A certificate revoked while its renewal is verified is not renewed: the
// transaction that would record the new certificate finds the revocation,
// refuses (403, not renewable), records nothing and burns the challenge.
func TestRenewRevokedMeanwhile(t *testing.T) {
	t.Parallel()
	d := newDevice(t, testenv.DevMeasurements())
	srv := newServer(t, d.sw.EKCA.Cert)
	ctx := testCtx(t)
	a, iss := d.enroll(t, srv.svc, workload("a"))
	cert := leaf(t, iss)
	serial := device.Serial(cert)
	ch, err := srv.svc.RenewChallenge(ctx, cert)
	if err != nil {
		t.Fatal(err)
	}
	req := renewRequest(t, a, ch)
	srv.svc.Policy = &duringDecision{Decider: srv.policy, do: func() {
		if err := srv.store.Tx(ctx, func(tx store.Tx) error {
			_, err := tx.RevokeCertificate(ctx, serial, "key compromise", time.Now())
			return err
		}); err != nil {
			t.Error(err)
		}
	}}
	got, err := srv.svc.Renew(ctx, cert, req)
	if !errors.Is(err, enroll.ErrNotRenewable) || errors.Is(err, enroll.ErrNotRecorded) {
		t.Fatalf("Renew of a certificate revoked meanwhile = %v, %v; want ErrNotRenewable", got, err)
	}
	certs, err := srv.store.DeviceCertificates(ctx, ekHashOf(d))
	if err != nil {
		t.Fatal(err)
	}
	if len(certs) != 1 || certs[0].Serial != serial {
		t.Errorf("device certificates after the refusal: %d, want only the revoked %s", len(certs), serial)
	}
	if used, err := srv.store.ChallengeUsed(ctx, ch.ID); err != nil || !used {
		t.Errorf("challenge used = %v (%v), want burnt", used, err)
	}
}
