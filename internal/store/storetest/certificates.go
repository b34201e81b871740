package storetest

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/internal/store"
)

func testCertificateRoundTrip(t *testing.T, h *harness) {
	st := h.fresh(t)
	ctx := context.Background()
	_, _, certs := Enroll(t, st, "d1", 1)
	got, err := st.Certificate(ctx, certs[0].Serial)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, certs[0]) {
		t.Fatalf("Certificate =\n%+v\nwant\n%+v", got, certs[0])
	}
	if _, err := st.Certificate(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Certificate(unknown) = %v, want ErrNotFound", err)
	}
}

func testInsertCertificateErrors(t *testing.T, h *harness) {
	st := h.fresh(t)
	d, e, certs := Enroll(t, st, "d1", 1)
	for _, tc := range []struct {
		name   string
		mutate func(*store.Certificate)
		want   error
	}{
		{"duplicate serial", func(c *store.Certificate) {}, store.ErrConflict},
		{"unknown device", func(c *store.Certificate) { c.Serial, c.EKHash = "s2", HexHash("nope") }, store.ErrNotFound},
		{"unknown evidence", func(c *store.Certificate) { c.Serial, c.EvidenceDigest = "s3", HexHash("nope") }, store.ErrNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := certs[0]
			tc.mutate(&c)
			if err := st.InsertCertificate(context.Background(), c); !errors.Is(err, tc.want) {
				t.Fatalf("InsertCertificate = %v, want %v", err, tc.want)
			}
		})
	}
	bad := Certificate("s4", d, e)
	bad.NotAfter = bad.NotBefore
	if err := st.InsertCertificate(context.Background(), bad); err == nil {
		t.Fatal("InsertCertificate(NotAfter = NotBefore) succeeded")
	}
}

func testDeviceCertificates(t *testing.T, h *harness) {
	st := h.fresh(t)
	ctx := context.Background()
	d, _, certs := Enroll(t, st, "d1", 3)
	Enroll(t, st, "d2", 2)
	got, err := st.DeviceCertificates(ctx, d.EKHash)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, certs) {
		t.Fatalf("DeviceCertificates =\n%+v\nwant\n%+v", got, certs)
	}
	if got, err := st.DeviceCertificates(ctx, "nope"); err != nil || got == nil || len(got) != 0 {
		t.Fatalf("DeviceCertificates(unknown) = %v, %v; want an empty slice", got, err)
	}
}

// testCurrentDeviceCertificates: the device's certificates neither revoked
// nor expired at the time asked (NotAfter after it), oldest first; none of
// another device's.
func testCurrentDeviceCertificates(t *testing.T, h *harness) {
	st := h.fresh(t)
	ctx := context.Background()
	d, _, certs := Enroll(t, st, "d1", 4) // NotAfter T0+1h, +1h1m, +1h2m, +1h3m
	_, _, others := Enroll(t, st, "d2", 1)
	if _, err := st.RevokeCertificate(ctx, certs[2].Serial, "superseded", T0); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		at   time.Time
		want []store.Certificate
	}{
		{T0, []store.Certificate{certs[0], certs[1], certs[3]}},
		{T0.Add(time.Hour + 30*time.Second), []store.Certificate{certs[1], certs[3]}},
		{certs[1].NotAfter, []store.Certificate{certs[3]}}, // expired at its NotAfter
		{certs[3].NotAfter, []store.Certificate{}},
	} {
		got, err := st.CurrentDeviceCertificates(ctx, d.EKHash, tc.at)
		if err != nil {
			t.Fatal(err)
		}
		var serials, want []string
		for _, c := range got {
			serials = append(serials, c.Serial)
			if c.RevokedAt != nil || !tc.at.Before(c.NotAfter) || c.EKHash != d.EKHash {
				t.Errorf("at %v: %+v is not current", tc.at, c)
			}
		}
		for _, c := range tc.want {
			want = append(want, c.Serial)
		}
		if !slices.Equal(serials, want) || got == nil {
			t.Errorf("CurrentDeviceCertificates at %v = %v, want %v", tc.at, serials, want)
		}
		if len(got) > 0 && !reflect.DeepEqual(got[len(got)-1], certs[3]) {
			t.Errorf("CurrentDeviceCertificates at %v: last =\n%+v\nwant\n%+v", tc.at, got[len(got)-1], certs[3])
		}
	}
	if got, err := st.CurrentDeviceCertificates(ctx, others[0].EKHash, T0); err != nil || len(got) != 1 || got[0].Serial != others[0].Serial {
		t.Errorf("CurrentDeviceCertificates of the other device = %v, %v", got, err)
	}
	if got, err := st.CurrentDeviceCertificates(ctx, "nope", T0); err != nil || got == nil || len(got) != 0 {
		t.Fatalf("CurrentDeviceCertificates(unknown) = %v, %v; want an empty slice", got, err)
	}
}

func testRevokeCertificate(t *testing.T, h *harness) {
	st := h.fresh(t)
	ctx := context.Background()
	_, _, certs := Enroll(t, st, "d1", 1)
	serial := certs[0].Serial
	at := T0.Add(time.Minute)
	if _, err := st.RevokeCertificate(ctx, serial, "superseded", at); err != nil {
		t.Fatal(err)
	}
	if _, err := st.RevokeCertificate(ctx, serial, "key compromise", at.Add(time.Minute)); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("second RevokeCertificate = %v, want ErrConflict", err)
	}
	got, err := st.Certificate(ctx, serial)
	if err != nil || got.RevokedAt == nil || !got.RevokedAt.Equal(at) || got.RevocationReason != "superseded" {
		t.Fatalf("after revoking twice: %v %q (%v), want the first revocation", got.RevokedAt, got.RevocationReason, err)
	}
	if _, err := st.RevokeCertificate(ctx, "nope", "superseded", at); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("RevokeCertificate(unknown) = %v, want ErrNotFound", err)
	}
}

func testRevocations(t *testing.T, h *harness) {
	st := h.fresh(t)
	ctx := context.Background()
	_, _, certs := Enroll(t, st, "d1", 3) // not after T0+1h, +1h1m, +1h2m
	if rs, err := st.Revocations(ctx, time.Time{}); err != nil || rs == nil || len(rs) != 0 {
		t.Fatalf("Revocations(none) = %v, %v; want an empty slice", rs, err)
	}
	for _, c := range certs[:2] {
		if _, err := st.RevokeCertificate(ctx, c.Serial, "superseded", T0.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	all := []store.Revocation{
		{Serial: certs[0].Serial, RevokedAt: T0.Add(time.Minute), Reason: "superseded"},
		{Serial: certs[1].Serial, RevokedAt: T0.Add(time.Minute), Reason: "superseded"},
	}
	for _, tc := range []struct {
		name        string
		unexpiredAt time.Time
		want        []store.Revocation
	}{
		{"all", time.Time{}, all},
		{"before any expiry", T0, all},
		{"first expired", certs[0].NotAfter, all[1:]},
		{"all expired", certs[2].NotAfter, []store.Revocation{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := st.Revocations(ctx, tc.unexpiredAt)
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("Revocations = %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

// insertHolding stores device name, its evidence and a certificate for
// spiffeID valid from T0 until notAfter.
func insertHolding(t *testing.T, st store.Store, name, spiffeID string, notAfter time.Time) (store.Device, store.Certificate) {
	t.Helper()
	ctx := context.Background()
	d := Device(name)
	e := Evidence(name, d)
	c := Certificate(Serial(name, 0), d, e)
	c.SPIFFEID, c.NotAfter = spiffeID, notAfter
	err := st.Tx(ctx, func(tx store.Tx) error {
		if _, err := tx.BindDevice(ctx, d, T0); err != nil {
			return err
		}
		if err := tx.PutEvidence(ctx, e); err != nil {
			return err
		}
		return tx.InsertCertificate(ctx, c)
	})
	if err != nil {
		t.Fatalf("store %s holding %s: %v", name, spiffeID, err)
	}
	return d, c
}

// testIdentityHolders: the active devices holding an identity at a time
// are those with a certificate for it neither revoked nor expired then;
// each once, sorted; inside Tx, the transaction's own certificates count.
func testIdentityHolders(t *testing.T, h *harness) {
	st := h.fresh(t)
	ctx := context.Background()
	const id, other = "spiffe://sigil.test/workload/orders", "spiffe://sigil.test/workload/payments"
	at := T0.Add(30 * time.Minute)
	holder, _ := insertHolding(t, st, "holder", id, T0.Add(time.Hour))
	second, _ := insertHolding(t, st, "second", id, T0.Add(2*time.Hour))
	// A second certificate of the same device is still one holder.
	c2 := Certificate(Serial("second", 1), second, Evidence("second", second))
	c2.SPIFFEID = id
	if err := st.InsertCertificate(ctx, c2); err != nil {
		t.Fatal(err)
	}
	insertHolding(t, st, "expired", id, at) // NotAfter = at: no longer valid
	_, revoked := insertHolding(t, st, "revoked", id, T0.Add(time.Hour))
	if _, err := st.RevokeCertificate(ctx, revoked.Serial, "superseded", T0); err != nil {
		t.Fatal(err)
	}
	disabled, _ := insertHolding(t, st, "disabled", id, T0.Add(time.Hour))
	if _, err := st.SetDeviceStatus(ctx, disabled.EKHash, store.DeviceDisabled, T0); err != nil {
		t.Fatal(err)
	}
	insertHolding(t, st, "elsewhere", other, T0.Add(time.Hour))

	want := []string{holder.EKHash, second.EKHash}
	slices.Sort(want)
	got, err := st.IdentityHolders(ctx, id, at)
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("IdentityHolders(%s) = %v, %v; want %v", id, got, err, want)
	}
	if got, err := st.IdentityHolders(ctx, id, T0.Add(90*time.Minute)); err != nil || !slices.Equal(got, []string{second.EKHash}) {
		t.Fatalf("IdentityHolders after the first expired = %v, %v; want [%s]", got, err, second.EKHash)
	}
	if got, err := st.IdentityHolders(ctx, "spiffe://sigil.test/workload/nobody", at); err != nil || got == nil || len(got) != 0 {
		t.Fatalf("IdentityHolders(unheld) = %v, %v; want an empty slice", got, err)
	}
	// The transaction's own certificate counts inside it, and is gone
	// with it when it fails.
	errRollback := errors.New("roll back")
	err = st.Tx(ctx, func(tx store.Tx) error {
		d := Device("newcomer")
		e := Evidence("newcomer", d)
		c := Certificate(Serial("newcomer", 0), d, e)
		c.SPIFFEID = other
		if _, err := tx.BindDevice(ctx, d, T0); err != nil {
			return err
		}
		if err := tx.PutEvidence(ctx, e); err != nil {
			return err
		}
		if err := tx.InsertCertificate(ctx, c); err != nil {
			return err
		}
		if got, err := tx.IdentityHolders(ctx, other, at); err != nil || len(got) != 2 || !slices.Contains(got, d.EKHash) {
			t.Errorf("IdentityHolders inside the Tx = %v, %v; want the new holder too", got, err)
		}
		return errRollback
	})
	if !errors.Is(err, errRollback) {
		t.Fatal(err)
	}
	if got, err := st.IdentityHolders(ctx, other, at); err != nil || len(got) != 1 {
		t.Fatalf("IdentityHolders after the rollback = %v, %v; want the one holder", got, err)
	}
}

// testDeviceIdentities: the identities a device holds at a time are those
// of its certificates neither revoked nor expired then; each once, sorted;
// other devices' certificates do not count.
func testDeviceIdentities(t *testing.T, h *harness) {
	st := h.fresh(t)
	ctx := context.Background()
	const orders, payments = "spiffe://sigil.test/workload/orders", "spiffe://sigil.test/workload/payments"
	at := T0.Add(30 * time.Minute)
	d, _ := insertHolding(t, st, "host", payments, T0.Add(time.Hour))
	for i, c := range []struct {
		id       string
		notAfter time.Time
		revoke   bool
	}{
		{orders, T0.Add(time.Hour), false},       // a second identity
		{payments, T0.Add(2 * time.Hour), false}, // the same identity again: once
		{"spiffe://sigil.test/workload/expired", at, false},
		{"spiffe://sigil.test/workload/revoked", T0.Add(time.Hour), true},
	} {
		cert := Certificate(Serial("host", i+1), d, Evidence("host", d))
		cert.SPIFFEID, cert.NotAfter = c.id, c.notAfter
		if err := st.InsertCertificate(ctx, cert); err != nil {
			t.Fatal(err)
		}
		if c.revoke {
			if _, err := st.RevokeCertificate(ctx, cert.Serial, "superseded", T0); err != nil {
				t.Fatal(err)
			}
		}
	}
	insertHolding(t, st, "elsewhere", "spiffe://sigil.test/workload/elsewhere", T0.Add(time.Hour))

	if got, err := st.DeviceIdentities(ctx, d.EKHash, at); err != nil || !slices.Equal(got, []string{orders, payments}) {
		t.Fatalf("DeviceIdentities = %v, %v; want [%s %s]", got, err, orders, payments)
	}
	if got, err := st.DeviceIdentities(ctx, d.EKHash, T0.Add(90*time.Minute)); err != nil || !slices.Equal(got, []string{payments}) {
		t.Fatalf("DeviceIdentities after the first hour = %v, %v; want [%s]", got, err, payments)
	}
	if got, err := st.DeviceIdentities(ctx, "nope", at); err != nil || got == nil || len(got) != 0 {
		t.Fatalf("DeviceIdentities(unknown) = %v, %v; want an empty slice", got, err)
	}
}
