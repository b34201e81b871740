package device_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"math/big"
	"net/url"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/internal/device"
	"github.com/sigil-dev/sigil/internal/store"
)

// certRecords is a Certificates of fixed records.
type certRecords map[string]store.Certificate

func (c certRecords) Certificate(_ context.Context, serial string) (store.Certificate, error) {
	rec, ok := c[serial]
	if !ok {
		return rec, store.ErrNotFound
	}
	return rec, nil
}

// Authenticate accepts only the certificate on record, unrevoked,
// unexpired, with exactly its SPIFFE ID; each refusal wraps
// ErrNotAuthenticated, a store failure does not.
func TestAuthenticate(t *testing.T) {
	const id = "spiffe://sigil.test/ops/auditor"
	now := time.Now()
	good := selfSigned(t, 1, id)
	twin := selfSigned(t, 1, id) // same serial, another certificate
	other := selfSigned(t, 2, "spiffe://sigil.test/workload/a")
	two := selfSigned(t, 3, id, "spiffe://sigil.test/workload/a")
	record := func(c *x509.Certificate, id string) store.Certificate {
		return store.Certificate{Serial: device.Serial(c), SPIFFEID: id, DER: c.Raw, NotAfter: now.Add(time.Hour)}
	}
	revokedAt := now.Add(-time.Minute)
	revoked := record(good, id)
	revoked.RevokedAt, revoked.RevocationReason = &revokedAt, "key compromise"
	expired := record(good, id)
	expired.NotAfter = now
	for _, tt := range []struct {
		name    string
		records certRecords
		cert    *x509.Certificate
		refused bool
	}{
		{"on-record", certRecords{"1": record(good, id)}, good, false},
		{"none", certRecords{}, nil, true},
		{"unknown", certRecords{}, good, true},
		{"other-certificate-same-serial", certRecords{"1": record(good, id)}, twin, true},
		{"revoked", certRecords{"1": revoked}, good, true},
		{"expired", certRecords{"1": expired}, good, true},
		{"other-spiffe-id-on-record", certRecords{"2": record(other, id)}, other, true},
		{"two-spiffe-ids", certRecords{"3": record(two, id)}, two, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rec, err := device.Authenticate(t.Context(), tt.records, tt.cert, now)
			switch {
			case tt.refused && !errors.Is(err, device.ErrNotAuthenticated):
				t.Fatalf("Authenticate = %v, want ErrNotAuthenticated", err)
			case !tt.refused && (err != nil || rec.SPIFFEID != id):
				t.Fatalf("Authenticate = %+v, %v; want the record", rec, err)
			}
		})
	}
	if _, err := device.Authenticate(t.Context(), brokenRecords{}, good, now); err == nil || errors.Is(err, device.ErrNotAuthenticated) {
		t.Errorf("Authenticate with a failing store = %v, want the store's error", err)
	}
}

// brokenRecords fails every lookup.
type brokenRecords struct{}

func (brokenRecords) Certificate(context.Context, string) (store.Certificate, error) {
	return store.Certificate{}, errors.New("disk I/O error")
}

func selfSigned(t *testing.T, serial int64, ids ...string) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	for _, id := range ids {
		u, err := url.Parse(id)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, u)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
