package storetest

import (
	"context"
	"errors"
	"reflect"
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
