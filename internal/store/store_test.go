package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// t0 is the tests' clock, at microsecond precision so that it round-trips.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 123456000, time.UTC)

func openStore(t testing.TB) (Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sigil.db")
	return openPath(t, path), path
}

func openPath(t testing.TB, dsn string) Store {
	t.Helper()
	st, err := Open(context.Background(), dsn)
	if err != nil {
		t.Fatalf("Open(%q): %v", dsn, err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func hexHash(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func testDevice(name string) Device {
	return Device{
		EKHash:      hexHash("ek-" + name),
		EKCertDER:   []byte("ek-cert-" + name),
		EKPublicDER: []byte("ek-pub-" + name),
		AKHash:      hexHash("ak-" + name),
		AKPublic:    []byte("ak-pub-" + name),
		Status:      DeviceActive,
	}
}

func testChallenge(id string, d Device) Challenge {
	secret := sha256.Sum256([]byte("secret-" + id))
	return Challenge{
		ID:         id,
		EKHash:     d.EKHash,
		AKHash:     d.AKHash,
		Nonce:      []byte("nonce-" + id),
		SecretHash: secret[:],
		SPIFFEID:   "spiffe://sigil.test/workload/" + id,
		Kind:       ChallengeEnroll,
		Pending:    []byte(`{"ak":"AAEC"}`),
		CreatedAt:  t0,
		ExpiresAt:  t0.Add(5 * time.Minute),
	}
}

func testEvidence(name string, d Device) Evidence {
	bundle := []byte(`{"quote":"` + name + `"}`)
	return Evidence{Digest: hexHash(string(bundle)), EKHash: d.EKHash, Kind: "enroll", Bundle: bundle, CreatedAt: t0}
}

func testCertificate(serial string, d Device, e Evidence) Certificate {
	return Certificate{
		Serial:         serial,
		SPIFFEID:       "spiffe://sigil.test/workload/" + serial,
		EKHash:         d.EKHash,
		NotBefore:      t0,
		NotAfter:       t0.Add(time.Hour),
		EvidenceDigest: e.Digest,
		PolicyVersion:  "sha256:policy",
		DER:            []byte("der-" + serial),
	}
}

// enrolled stores a device, one evidence record and n certificates on it.
func enrolled(t testing.TB, st Store, name string, n int) (Device, Evidence, []Certificate) {
	t.Helper()
	ctx := context.Background()
	d := testDevice(name)
	e := testEvidence(name, d)
	var certs []Certificate
	err := st.Tx(ctx, func(tx Tx) error {
		if _, err := tx.BindDevice(ctx, d, t0); err != nil {
			return err
		}
		if err := tx.PutEvidence(ctx, e); err != nil {
			return err
		}
		for i := range n {
			c := testCertificate(fmt.Sprintf("%s%02x", hexHash(name)[:8], i), d, e)
			c.NotBefore = t0.Add(time.Duration(i) * time.Minute)
			c.NotAfter = c.NotBefore.Add(time.Hour)
			if err := tx.InsertCertificate(ctx, c); err != nil {
				return err
			}
			certs = append(certs, c)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("enroll %s: %v", name, err)
	}
	d.CreatedAt, d.UpdatedAt = t0, t0
	return d, e, certs
}
