package storetest

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/internal/store"
)

func testDeviceRoundTrip(t *testing.T, h *harness) {
	st := h.fresh(t)
	ctx := context.Background()
	want := Device("d1")
	want.EKCertDER = nil // admitted by EK hash, no certificate
	prev, err := st.BindDevice(ctx, want, T0)
	if err != nil || prev != "" {
		t.Fatalf("BindDevice(new) = %q, %v; want \"\", nil", prev, err)
	}
	want.CreatedAt, want.UpdatedAt = T0, T0
	got, err := st.Device(ctx, want.EKHash)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Device =\n%+v\nwant\n%+v", got, want)
	}
	if _, err := st.Device(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Device(unknown) = %v, want ErrNotFound", err)
	}
}

func testBindDeviceRebind(t *testing.T, h *harness) {
	st := h.fresh(t)
	ctx := context.Background()
	d := Device("d1")
	if _, err := st.BindDevice(ctx, d, T0); err != nil {
		t.Fatal(err)
	}
	if _, err := st.SetDeviceStatus(ctx, d.EKHash, store.DeviceDisabled, T0); err != nil {
		t.Fatal(err)
	}

	same := d
	same.EKCertDER = nil
	if prev, err := st.BindDevice(ctx, same, T0.Add(time.Minute)); err != nil || prev != "" {
		t.Fatalf("BindDevice(same AK) = %q, %v; want \"\", nil", prev, err)
	}

	rebound := d
	rebound.AKHash, rebound.AKPublic = HexHash("ak-new"), []byte("ak-pub-new")
	rebound.EKCertDER, rebound.Status = nil, store.DeviceActive
	prev, err := st.BindDevice(ctx, rebound, T0.Add(2*time.Minute))
	if err != nil || prev != d.AKHash {
		t.Fatalf("BindDevice(new AK) = %q, %v; want the previous AK %q", prev, err, d.AKHash)
	}
	got, err := st.Device(ctx, d.EKHash)
	if err != nil {
		t.Fatal(err)
	}
	want := d
	want.AKHash, want.AKPublic = rebound.AKHash, rebound.AKPublic
	want.Status = store.DeviceDisabled // a rebind does not re-enable
	want.CreatedAt, want.UpdatedAt = T0, T0.Add(2*time.Minute)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Device after rebind =\n%+v\nwant\n%+v", got, want)
	}
}

func testBindDeviceAKOfAnotherEK(t *testing.T, h *harness) {
	st := h.fresh(t)
	ctx := context.Background()
	d1, d2 := Device("d1"), Device("d2")
	for _, d := range []store.Device{d1, d2} {
		if _, err := st.BindDevice(ctx, d, T0); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name string
		d    store.Device
	}{
		{"new EK", func() store.Device { d := Device("d3"); d.AKHash = d1.AKHash; return d }()},
		{"rebind", func() store.Device { d := d2; d.AKHash = d1.AKHash; return d }()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := st.BindDevice(ctx, tc.d, T0); !errors.Is(err, store.ErrConflict) {
				t.Fatalf("BindDevice = %v, want ErrConflict", err)
			}
		})
	}
}

func testDevices(t *testing.T, h *harness) {
	st := h.fresh(t)
	ctx := context.Background()
	if ds, err := st.Devices(ctx); err != nil || ds == nil || len(ds) != 0 {
		t.Fatalf("Devices(empty) = %v, %v; want an empty slice", ds, err)
	}
	var want []store.Device
	for _, name := range []string{"a", "b", "c"} {
		d, _, _ := Enroll(t, st, name, 0)
		want = append(want, d)
	}
	ds, err := st.Devices(ctx)
	if err != nil || len(ds) != 3 {
		t.Fatalf("Devices = %d, %v; want 3", len(ds), err)
	}
	for i := 1; i < len(ds); i++ {
		if ds[i-1].EKHash >= ds[i].EKHash {
			t.Fatalf("Devices not ordered by EK hash: %s, %s", ds[i-1].EKHash, ds[i].EKHash)
		}
	}
	for _, w := range want {
		got, _ := st.Device(ctx, w.EKHash)
		if !reflect.DeepEqual(got, w) {
			t.Errorf("Device %s = %+v, want %+v", w.EKHash, got, w)
		}
	}
}

func testDisableDeviceRevokesCertificates(t *testing.T, h *harness) {
	st := h.fresh(t)
	ctx := context.Background()
	d, e, certs := Enroll(t, st, "d1", 3)
	_, _, otherCerts := Enroll(t, st, "d2", 1)
	compromised := T0.Add(time.Minute)
	if _, err := st.RevokeCertificate(ctx, certs[0].Serial, "key compromise", compromised); err != nil {
		t.Fatal(err)
	}

	disabledAt := T0.Add(10 * time.Minute)
	revoked, err := st.SetDeviceStatus(ctx, d.EKHash, store.DeviceDisabled, disabledAt)
	if err != nil {
		t.Fatal(err)
	}
	if want := (store.Revoked{Certificates: []string{certs[1].Serial, certs[2].Serial}, Tokens: []string{}}); !reflect.DeepEqual(revoked, want) {
		t.Fatalf("SetDeviceStatus revoked %v, want %v", revoked, want)
	}
	for i, want := range []struct {
		at     time.Time
		reason string
	}{{compromised, "key compromise"}, {disabledAt, store.ReasonDeviceDisabled}, {disabledAt, store.ReasonDeviceDisabled}} {
		got, err := st.Certificate(ctx, certs[i].Serial)
		if err != nil || got.RevokedAt == nil || !got.RevokedAt.Equal(want.at) || got.RevocationReason != want.reason {
			t.Errorf("certificate %d: revoked %v %q (%v), want %v %q", i, got.RevokedAt, got.RevocationReason, err, want.at, want.reason)
		}
	}
	if got, _ := st.Certificate(ctx, otherCerts[0].Serial); got.RevokedAt != nil {
		t.Errorf("another device's certificate was revoked")
	}
	if got, _ := st.Device(ctx, d.EKHash); got.Status != store.DeviceDisabled || !got.UpdatedAt.Equal(disabledAt) {
		t.Errorf("device status %s at %v, want disabled at %v", got.Status, got.UpdatedAt, disabledAt)
	}

	late := Certificate("late", d, e)
	if err := st.InsertCertificate(ctx, late); !errors.Is(err, store.ErrDeviceDisabled) {
		t.Fatalf("InsertCertificate on a disabled device = %v, want ErrDeviceDisabled", err)
	}

	// Enabling again unrevokes nothing, and disabling again revokes nothing.
	if revoked, err := st.SetDeviceStatus(ctx, d.EKHash, store.DeviceActive, T0.Add(time.Hour)); err != nil || len(revoked.Certificates) != 0 || len(revoked.Tokens) != 0 {
		t.Fatalf("enable = %v, %v", revoked, err)
	}
	if got, _ := st.Certificate(ctx, certs[2].Serial); got.RevokedAt == nil {
		t.Fatal("enabling the device unrevoked a certificate")
	}
	if revoked, err := st.SetDeviceStatus(ctx, d.EKHash, store.DeviceDisabled, T0.Add(2*time.Hour)); err != nil || len(revoked.Certificates) != 0 || len(revoked.Tokens) != 0 {
		t.Fatalf("second disable = %v, %v; want nothing revoked", revoked, err)
	}
}

func testSetDeviceStatusErrors(t *testing.T, h *harness) {
	st := h.fresh(t)
	ctx := context.Background()
	d, _, _ := Enroll(t, st, "d1", 0)
	if _, err := st.SetDeviceStatus(ctx, "nope", store.DeviceDisabled, T0); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("SetDeviceStatus(unknown) = %v, want ErrNotFound", err)
	}
	if _, err := st.SetDeviceStatus(ctx, d.EKHash, "lost", T0); err == nil {
		t.Fatal("SetDeviceStatus(invalid status) succeeded")
	}
}
