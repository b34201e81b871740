package enroll_test

import (
	"context"
	"errors"
	"testing"

	"github.com/sigil-dev/sigil/audit"
	"github.com/sigil-dev/sigil/internal/enroll"
	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/testenv"
)

// An enrollment writes its device entry (with the full evidence) and its
// certificate entry, findable by serial; a denial is logged too.
func TestEnrollmentIsLogged(t *testing.T) {
	t.Parallel()
	d := newDevice(t, testenv.DevMeasurements())
	srv := newServer(t, d.sw.EKCA.Cert)
	ctx := testCtx(t)
	_, iss := d.enroll(t, srv.svc, workload("logged"))
	serial := leaf(t, iss).SerialNumber.Text(16)

	idx, err := srv.store.AuditIndex(ctx, "serial:"+serial)
	if err != nil {
		t.Fatalf("no audit entry for serial %s: %v", serial, err)
	}
	kinds := loggedKinds(t, srv.store)
	if idx != uint64(len(kinds)-1) || kinds[idx] != audit.CertificateIssued || kinds[idx-1] != audit.DeviceEnrolled {
		t.Fatalf("log = %v, serial at %d: want device.enrolled then certificate.issued", kinds, idx)
	}
	entries, err := srv.store.AuditEntries(ctx, idx-1, idx)
	if err != nil {
		t.Fatal(err)
	}
	e, _ := audit.Decode(entries[0])
	p, err := e.Payload()
	if err != nil {
		t.Fatal(err)
	}
	if en := p.(*audit.Enrollment); en.EvidenceDigest != iss.Certificate.EvidenceDigest || len(en.Evidence) == 0 {
		t.Errorf("enrollment entry has evidence digest %s and %d bytes of evidence", en.EvidenceDigest, len(en.Evidence))
	}

	a := d.begin(t, srv.svc, d.host, workload("not/allowed"))
	if _, err := srv.svc.Complete(ctx, a.req); err == nil {
		t.Fatal("nested identity enrolled")
	}
	if kinds := loggedKinds(t, srv.store); kinds[len(kinds)-1] != audit.EnrollmentDenied {
		t.Fatalf("denial not logged: %v", kinds)
	}
}

// Fail closed: when the audit entry cannot be appended, the enrollment does
// not take effect — no device, evidence or certificate — and the error says
// to retry.
func TestEnrollmentFailsClosedWithoutTheLog(t *testing.T) {
	t.Parallel()
	d := newDevice(t, testenv.DevMeasurements())
	srv := newServer(t, d.sw.EKCA.Cert)
	ctx := testCtx(t)
	srv.svc.Store = brokenLog{srv.store}
	a := d.begin(t, srv.svc, d.newAK(t), workload("unlogged"))
	_, err := srv.svc.Complete(ctx, a.req)
	if !errors.Is(err, enroll.ErrNotRecorded) {
		t.Fatalf("Complete = %v, want ErrNotRecorded", err)
	}
	if _, err := srv.store.Device(ctx, ekHashOf(d)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("device stored although its audit entry was not: %v", err)
	}
	if n, _ := srv.store.AuditSize(ctx); n != 0 {
		t.Errorf("audit log has %d entries, want none", n)
	}
}

// brokenLog is a store whose audit appends fail, as when the log's table
// cannot be written.
type brokenLog struct{ store.Store }

func (b brokenLog) Tx(ctx context.Context, fn func(store.Tx) error) error {
	return b.Store.Tx(ctx, func(tx store.Tx) error { return fn(brokenTx{tx}) })
}

type brokenTx struct{ store.Tx }

func (brokenTx) AppendAudit(context.Context, store.AuditEntry) (uint64, error) {
	return 0, errors.New("audit_entries: disk I/O error")
}

func loggedKinds(t *testing.T, st store.Store) []audit.Kind {
	t.Helper()
	ctx := context.Background()
	n, err := st.AuditSize(ctx)
	if err != nil || n == 0 {
		t.Fatalf("audit size %d: %v", n, err)
	}
	entries, err := st.AuditEntries(ctx, 0, n)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []audit.Kind
	for _, data := range entries {
		e, err := audit.Decode(data)
		if err != nil {
			t.Fatal(err)
		}
		kinds = append(kinds, e.Kind)
	}
	return kinds
}
