package device_test

import (
	"errors"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/audit"
	"github.com/sigil-dev/sigil/internal/device"
	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/internal/store/backend"
)

// Disabling a device revokes its unrevoked certificates and logs the change
// and each revocation in the same transaction; enabling it logs the change
// and revokes nothing; an unknown device changes and logs nothing.
func TestSetStatus(t *testing.T) {
	ctx := t.Context()
	st, err := backend.Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), "sigil.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	now := time.Now().Truncate(time.Millisecond)
	storeDevice(t, st, "ek1", now, "a1", "a2")
	if _, err := st.RevokeCertificate(ctx, "a2", "key compromise", now); err != nil {
		t.Fatal(err)
	}

	// A token issued to the device (bound to a1), and one exchanged from
	// it by another workload: both die with the device.
	a1 := store.Certificate{DER: []byte("a1")}
	tokens := []store.Token{
		{JTI: "t1", Sub: "spiffe://sigil.test/workload/w", IssuedAt: now, ExpiresAt: now.Add(time.Hour), CNF: a1.Thumbprint(), Kind: store.TokenJWT},
		{JTI: "t2", ParentJTI: "t1", Sub: "spiffe://sigil.test/workload/w", IssuedAt: now, ExpiresAt: now.Add(time.Hour), CNF: "other", Kind: store.TokenJWT},
	}
	for _, tok := range tokens {
		if err := st.InsertToken(ctx, tok); err != nil {
			t.Fatal(err)
		}
	}

	revoked, err := device.SetStatus(ctx, st, "ek1", store.DeviceDisabled, now)
	if err != nil || !slices.Equal(revoked.Certificates, []string{"a1"}) || !slices.Equal(revoked.Tokens, []string{"t1", "t2"}) {
		t.Fatalf("disable = %+v, %v; want certificate a1, tokens t1 and t2", revoked, err)
	}
	got := logged(t, st)
	if len(got) != 4 || got[0].Kind != audit.DeviceDisabled || got[1].Kind != audit.CertificateRevoked ||
		got[2].Kind != audit.TokenRevoked || got[3].Kind != audit.TokenRevoked {
		t.Fatalf("disabling logged %v", got)
	}
	for i, jti := range []string{"t1", "t2"} {
		p := payload[audit.Token](t, got[2+i])
		if p.JTI != jti || p.Reason != store.CertificateRevokedPrefix+store.ReasonDeviceDisabled {
			t.Errorf("token revocation entry %d = %+v, want %s revoked for %q", i, p, jti, store.CertificateRevokedPrefix+store.ReasonDeviceDisabled)
		}
		if tok, err := st.Token(ctx, jti); err != nil || tok.RevokedAt == nil {
			t.Errorf("token %s after disabling its device: revoked %v (%v)", jti, tok.RevokedAt, err)
		}
	}
	if p := payload[audit.Device](t, got[0]); *p != (audit.Device{EKHash: "ek1", Status: string(store.DeviceDisabled)}) {
		t.Errorf("device entry = %+v", p)
	}
	if p := payload[audit.Certificate](t, got[1]); p.Serial != "a1" || p.EKHash != "ek1" || p.Reason != store.ReasonDeviceDisabled {
		t.Errorf("revocation entry = %+v", p)
	}

	revoked, err = device.SetStatus(ctx, st, "ek1", store.DeviceActive, now)
	if err != nil || len(revoked.Certificates)+len(revoked.Tokens) != 0 {
		t.Fatalf("enable = %+v, %v; want nothing revoked", revoked, err)
	}
	got = logged(t, st)
	if p := payload[audit.Device](t, got[len(got)-1]); len(got) != 5 || p.Status != string(store.DeviceActive) {
		t.Errorf("enabling logged %d entries, the last %+v", len(got)-4, p)
	}

	if _, err := device.SetStatus(ctx, st, "ek2", store.DeviceDisabled, now); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("disable an unknown device = %v, want ErrNotFound", err)
	}
	if n := len(logged(t, st)); n != 5 {
		t.Errorf("disabling an unknown device logged %d entries", n-5)
	}
}

// storeDevice stores an active device with certificates of the given
// serials.
func storeDevice(t *testing.T, st store.Store, ek string, now time.Time, serials ...string) {
	t.Helper()
	ctx := t.Context()
	err := st.Tx(ctx, func(tx store.Tx) error {
		dev := store.Device{EKHash: ek, EKPublicDER: []byte("ek"), AKHash: "ak-" + ek, AKPublic: []byte("ak"), Status: store.DeviceActive, CreatedAt: now}
		if _, err := tx.BindDevice(ctx, dev, now); err != nil {
			return err
		}
		if err := tx.PutEvidence(ctx, store.Evidence{Digest: "d-" + ek, EKHash: ek, Kind: "enrollment", Bundle: []byte(`{}`), CreatedAt: now}); err != nil {
			return err
		}
		for _, s := range serials {
			cert := store.Certificate{Serial: s, SPIFFEID: "spiffe://sigil.test/workload/w", EKHash: ek,
				NotBefore: now, NotAfter: now.Add(time.Hour), EvidenceDigest: "d-" + ek, DER: []byte(s)}
			if err := tx.InsertCertificate(ctx, cert); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// logged decodes every entry of the audit log.
func logged(t *testing.T, st store.Store) []audit.Entry {
	t.Helper()
	ctx := t.Context()
	n, err := st.AuditSize(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		return nil
	}
	data, err := st.AuditEntries(ctx, 0, n)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]audit.Entry, len(data))
	for i, d := range data {
		if out[i], err = audit.Decode(d); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func payload[P any](t *testing.T, e audit.Entry) *P {
	t.Helper()
	p, err := e.Payload()
	if err != nil {
		t.Fatal(err)
	}
	return p.(*P)
}
