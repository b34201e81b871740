package sqlite

import (
	"context"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/internal/store"
)

// TestMigrateCertificateRevocations: migration 0008 gives the certificates
// stored before it their thumbprints, so that the tokens bound to them are
// revoked with them from then on, and puts the certificates revoked before
// it on the feed, numbered after the token events already there.
func TestMigrateCertificateRevocations(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sigil.db")
	db, err := openSQLitePool(ctx, path+"?_txlock=immediate&_pragma=foreign_keys(1)&_pragma=journal_mode(WAL)", 1)
	if err != nil {
		t.Fatal(err)
	}
	ms, err := store.LoadMigrations(sqliteMigrations, "migrations")
	if err != nil || len(ms) < 8 || ms[7].Name != "certificate_revocations" {
		t.Fatalf("loadMigrations = %d, %v; want 0008_certificate_revocations", len(ms), err)
	}
	if err := migrate(ctx, db, ms[:7]); err != nil {
		t.Fatal(err)
	}
	d := testDevice("d1")
	e := testEvidence("d1", d)
	live, gone := testCertificate("live", d, e), testCertificate("gone", d, e)
	w := writer{sqlQuerier{db}}
	if _, err := w.BindDevice(ctx, d, t0); err != nil {
		t.Fatal(err)
	}
	if err := w.PutEvidence(ctx, e); err != nil {
		t.Fatal(err)
	}
	revokedAt := t0.Add(time.Minute)
	for _, c := range []store.Certificate{live, gone} { // as InsertCertificate and RevokeCertificate did at version 7
		if _, err := db.ExecContext(ctx, `INSERT INTO certificates (`+certificateColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, '')`,
			c.Serial, c.SPIFFEID, c.EKHash, micros(c.NotBefore), micros(c.NotAfter), c.EvidenceDigest, c.PolicyVersion, c.DER); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.ExecContext(ctx, `UPDATE certificates SET revoked_at = ?, revocation_reason = 'key compromise' WHERE serial = 'gone'`, micros(revokedAt)); err != nil {
		t.Fatal(err)
	}
	// A token bound to live, and another revoked with its event, as a
	// version 7 sigild stored them.
	for _, tok := range []struct{ jti, cnf string }{{"bound", live.Thumbprint()}, {"other", "x5t-other"}} {
		if _, err := db.ExecContext(ctx, `INSERT INTO tokens (jti, sub, client_id, scope, issued_at, expires_at, cnf, kind, kid)
			VALUES (?, 'alice', 'spiffe://sigil.test/workload/a', '', ?, ?, ?, 'jwt', 'k')`,
			tok.jti, micros(t0), micros(t0.Add(time.Hour)), tok.cnf); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := w.RevokeToken(ctx, "other", "logout", t0); err != nil {
		t.Fatal(err)
	}
	db.Close()

	st := openPath(t, path)
	for _, c := range []store.Certificate{live, gone} {
		if got, err := st.CertificateByThumbprint(ctx, c.Thumbprint()); err != nil || got.Serial != c.Serial {
			t.Errorf("CertificateByThumbprint(%s) after migration = %s, %v", c.Serial, got.Serial, err)
		}
	}
	want := []store.RevocationEvent{
		{Seq: 1, JTI: "other", RevokedAt: t0, Reason: "logout"},
		{Seq: 2, Serial: "gone", Thumbprint: gone.Thumbprint(), NotAfter: gone.NotAfter, RevokedAt: revokedAt, Reason: "key compromise"},
	}
	if got, err := st.RevocationEvents(ctx, 0, 0); err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("RevocationEvents after migration =\n%+v, %v\nwant\n%+v", got, err, want)
	}
	revoked, err := st.RevokeCertificate(ctx, "live", "device disabled", t0.Add(time.Hour))
	if err != nil || !reflect.DeepEqual(revoked, store.Revoked{Certificates: []string{"live"}, Tokens: []string{"bound"}}) {
		t.Fatalf("RevokeCertificate of a certificate stored before the migration = %+v, %v; want its token revoked", revoked, err)
	}
}
