package enroll_test

import (
	"encoding/pem"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/sigil-dev/sigil/audit"
	"github.com/sigil-dev/sigil/testenv"
)

var captureEvidence = flag.String("capture-evidence", "", "write one enrollment's and one renewal's stored evidence, certificates and audit entries to this directory")

// TestCaptureEvidence records real evidence as this code stores it, for
// attest's format-stability fixtures. It runs only with -capture-evidence.
func TestCaptureEvidence(t *testing.T) {
	if *captureEvidence == "" {
		t.Skip("run with -capture-evidence DIR")
	}
	dir := *captureEvidence
	d := newDevice(t, testenv.DevMeasurements())
	srv := newServer(t, d.sw.EKCA.Cert)
	ctx := testCtx(t)
	a, iss := d.enroll(t, srv.svc, workload("a"))
	cert := leaf(t, iss)
	ch, err := srv.svc.RenewChallenge(ctx, cert)
	if err != nil {
		t.Fatal(err)
	}
	iss2, err := srv.svc.Renew(ctx, cert, renewRequest(t, a, ch))
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, data []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	certPEM := func(der []byte) []byte { return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}) }
	write("ek-ca.pem", certPEM(d.sw.EKCA.Cert.Raw))
	for name, is := range map[string]string{"enroll": iss.Certificate.EvidenceDigest, "renew": iss2.Certificate.EvidenceDigest} {
		rec, err := srv.store.Evidence(ctx, is)
		if err != nil {
			t.Fatal(err)
		}
		write(name+".json", rec.Bundle)
	}
	write("enroll-cert.pem", certPEM(iss.Certificate.Chain[0]))
	write("renew-cert.pem", certPEM(iss2.Certificate.Chain[0]))
	n, err := srv.store.AuditSize(ctx)
	if err != nil {
		t.Fatal(err)
	}
	entries, err := srv.store.AuditEntries(ctx, 0, n)
	if err != nil {
		t.Fatal(err)
	}
	for _, data := range entries {
		e, err := audit.Decode(data)
		if err != nil {
			t.Fatal(err)
		}
		switch e.Kind {
		case audit.DeviceEnrolled:
			write("enroll-entry.json", data)
		case audit.CertificateRenewed:
			write("renew-entry.json", data)
		}
	}
}
