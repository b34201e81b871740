package enroll_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/audit"
	"github.com/sigil-dev/sigil/internal/enroll"
	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/testenv"
)

// Disabling a device revokes its certificates and logs the change and each
// revocation in the same transaction; enabling it logs the change and
// revokes nothing; an unknown device changes and logs nothing.
func TestSetDeviceStatus(t *testing.T) {
	t.Parallel()
	d := newDevice(t, testenv.DevMeasurements())
	srv := newServer(t, d.sw.EKCA.Cert)
	ctx := testCtx(t)
	_, iss := d.enroll(t, srv.svc, workload("disabled"))
	serial := leaf(t, iss).SerialNumber.Text(16)
	ek := iss.Result.EK.Hash
	before := len(loggedKinds(t, srv.store))

	revoked, err := enroll.SetDeviceStatus(ctx, srv.store, ek, store.DeviceDisabled, time.Now())
	if err != nil || !slices.Equal(revoked, []string{serial}) {
		t.Fatalf("disable = %v, %v; want [%s]", revoked, err, serial)
	}
	logged := loggedKinds(t, srv.store)[before:]
	if !slices.Equal(logged, []audit.Kind{audit.DeviceDisabled, audit.CertificateRevoked}) {
		t.Fatalf("disabling logged %v", logged)
	}
	if p := lastPayload(t, srv.store).(*audit.Certificate); p.Serial != serial || p.EKHash != ek || p.Reason != store.ReasonDeviceDisabled {
		t.Errorf("revocation entry = %+v", p)
	}

	revoked, err = enroll.SetDeviceStatus(ctx, srv.store, ek, store.DeviceActive, time.Now())
	if err != nil || len(revoked) != 0 {
		t.Fatalf("enable = %v, %v; want nothing revoked", revoked, err)
	}
	if p := lastPayload(t, srv.store).(*audit.Device); p.EKHash != ek || p.Status != string(store.DeviceActive) {
		t.Errorf("enable entry = %+v", p)
	}

	n := len(loggedKinds(t, srv.store))
	if _, err := enroll.SetDeviceStatus(ctx, srv.store, "00"+ek[2:], store.DeviceDisabled, time.Now()); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("disable an unknown device = %v, want ErrNotFound", err)
	}
	if got := len(loggedKinds(t, srv.store)); got != n {
		t.Errorf("disabling an unknown device logged %d entries", got-n)
	}
}

// lastPayload decodes the payload of the log's last entry.
func lastPayload(t *testing.T, st store.Store) any {
	t.Helper()
	ctx := t.Context()
	n, err := st.AuditSize(ctx)
	if err != nil {
		t.Fatal(err)
	}
	entries, err := st.AuditEntries(ctx, n-1, n)
	if err != nil {
		t.Fatal(err)
	}
	e, err := audit.Decode(entries[0])
	if err != nil {
		t.Fatal(err)
	}
	p, err := e.Payload()
	if err != nil {
		t.Fatal(err)
	}
	return p
}
