package device_test

import (
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/audit"
	"github.com/sigil-dev/sigil/internal/device"
	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/internal/store/backend"
)

// Revoking one certificate for a reason revokes it and the tokens resting
// on it, logs each revocation with the reason, and leaves the device and
// its other certificates alone; a reason outside the list, an unknown
// serial and a second revocation change and log nothing.
func TestRevokeCertificate(t *testing.T) {
	ctx := t.Context()
	st, err := backend.Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), "sigil.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	now := time.Now().Truncate(time.Millisecond)
	storeDevice(t, st, "ek1", now, "a1", "a2")
	a1 := store.Certificate{DER: []byte("a1")}
	if err := st.InsertToken(ctx, store.Token{JTI: "t1", Sub: "spiffe://sigil.test/workload/w", IssuedAt: now, ExpiresAt: now.Add(time.Hour), CNF: a1.Thumbprint(), Kind: store.TokenJWT}); err != nil {
		t.Fatal(err)
	}

	revoked, err := device.RevokeCertificate(ctx, st, "a1", store.ReasonKeyCompromise, now)
	if err != nil || !slices.Equal(revoked.Certificates, []string{"a1"}) || !slices.Equal(revoked.Tokens, []string{"t1"}) {
		t.Fatalf("revoke = %+v, %v; want certificate a1 and token t1", revoked, err)
	}
	got := logged(t, st)
	if len(got) != 2 || got[0].Kind != audit.CertificateRevoked || got[1].Kind != audit.TokenRevoked {
		t.Fatalf("logged %v", got)
	}
	if p := payload[audit.Certificate](t, got[0]); p.Serial != "a1" || p.EKHash != "ek1" || p.Reason != store.ReasonKeyCompromise {
		t.Errorf("revocation entry = %+v", p)
	}
	revs, err := st.Revocations(ctx, now)
	if err != nil || len(revs) != 1 || revs[0].Serial != "a1" || revs[0].Reason != store.ReasonKeyCompromise {
		t.Errorf("CRL entries %+v (%v), want a1 for key compromise", revs, err)
	}
	if dev, err := st.Device(ctx, "ek1"); err != nil || dev.Status != store.DeviceActive {
		t.Errorf("device after revoking one certificate: %+v (%v), want active", dev, err)
	}

	for _, tt := range []struct {
		name, serial, reason string
		want                 error
		text                 string
	}{
		{"unlisted reason", "a2", "operator said so", nil, "want one of"},
		{"unknown serial", "zz", store.ReasonSuperseded, store.ErrNotFound, ""},
		{"revoked already", "a1", store.ReasonSuperseded, store.ErrConflict, ""},
	} {
		_, err := device.RevokeCertificate(ctx, st, tt.serial, tt.reason, now)
		if err == nil || tt.want != nil && !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.text) {
			t.Errorf("%s: %v, want %v %q", tt.name, err, tt.want, tt.text)
		}
	}
	if n := len(logged(t, st)); n != 2 {
		t.Errorf("refused revocations logged %d entries", n-2)
	}
}
