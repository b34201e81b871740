package enroll_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/internal/enroll"
	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/policy"
	"github.com/sigil-dev/sigil/testenv"
)

// twoDevices starts two TPMs of their own, each with its own EK, whose EK
// certificates come from one CA, and a server that trusts that CA.
func twoDevices(t *testing.T, opts ...func(*serverConfig)) (a, b *machine, srv *server) {
	t.Helper()
	ca, err := testenv.NewEKCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	a = newDeviceWith(t, testenv.DevMeasurements(), testenv.WithEKCA(ca))
	b = newDeviceWith(t, testenv.DevMeasurements(), testenv.WithEKCA(ca))
	if ekHashOf(a) == ekHashOf(b) {
		t.Fatal("the two TPMs share an EK")
	}
	return a, b, newServer(t, ca.Cert, opts...)
}

// wantHeldDenial checks err is the dev policy's denial of an identity
// another device holds.
func wantHeldDenial(t *testing.T, err error) {
	t.Helper()
	var denied *enroll.DeniedError
	if !errors.As(err, &denied) || !slices.Equal(denied.Decision.PolicyIDs, []string{"one-device-per-identity"}) {
		t.Fatalf("got %v, want a denial by one-device-per-identity", err)
	}
}

// TestIdentityHeldByAnotherDevice is the attack: a second TPM, genuine and
// booted as the policy wants, enrolls as an identity an active device
// holds. Policy is told (context.other_holders) and the dev policy
// forbids it; the holder itself may enroll as it again, and once the
// holder is disabled the identity is free.
func TestIdentityHeldByAnotherDevice(t *testing.T) {
	t.Parallel()
	holder, second, srv := twoDevices(t)
	ctx := testCtx(t)
	first, _ := holder.enroll(t, srv.svc, workload("orders"))

	_, err := srv.svc.Complete(ctx, second.begin(t, srv.svc, second.newAK(t), workload("orders")).req)
	wantHeldDenial(t, err)
	if _, err := srv.store.Device(ctx, ekHashOf(second)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Device after the denial: %v, want ErrNotFound", err)
	}
	second.enroll(t, srv.svc, workload("payments")) // another identity is fine

	// The holder enrolls as it again (its own certificate does not count).
	again := holder.begin(t, srv.svc, first.ak, workload("orders"))
	if _, err := srv.svc.Complete(ctx, again.req); err != nil {
		t.Fatalf("the holder enrolling again: %v", err)
	}

	if _, err := srv.store.SetDeviceStatus(ctx, ekHashOf(holder), store.DeviceDisabled, time.Now()); err != nil {
		t.Fatal(err)
	}
	second.enroll(t, srv.svc, workload("orders"))
}

// TestRenewalOfIdentityHeldElsewhere: two devices came to hold one identity
// under a policy that allowed it; under the dev policy neither renews it.
func TestRenewalOfIdentityHeldElsewhere(t *testing.T) {
	t.Parallel()
	a, b, srv := twoDevices(t, withPolicy("../../policy/testdata/dev"))
	ctx := testCtx(t)
	att, iss := a.enroll(t, srv.svc, workload("orders"))
	b.enroll(t, srv.svc, workload("orders"))

	dev, err := policy.Load(devPolicy)
	if err != nil {
		t.Fatal(err)
	}
	srv.svc.Policy = dev
	cert := leaf(t, iss)
	ch, err := srv.svc.RenewChallenge(ctx, cert)
	if err != nil {
		t.Fatal(err)
	}
	_, err = srv.svc.Renew(ctx, cert, renewRequest(t, att, ch))
	wantHeldDenial(t, err)
}
