package attest_test

import (
	"bytes"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/attest"
	"github.com/sigil-dev/sigil/audit"
)

// The audit log checker re-verifies the evidence of the recorded
// device.enrolled and certificate.renewed entries (testdata/v1, as sigild
// logged them); every tampered entry, named after its defect, fails with
// the reason an auditor reads.
func TestLogChecker(t *testing.T) {
	enroll, renew := recordedEntry(t, "enroll-entry.json"), recordedEntry(t, "renew-entry.json")
	enrolled := payload[audit.Enrollment](t, enroll)
	tests := []struct {
		name    string
		entries []audit.Entry
		step    attest.Step // of the last entry's failure, if any
		want    string      // in the last entry's error; "" for none
	}{
		{"recorded-log", []audit.Entry{enroll, renew}, "", ""},
		{"other-kinds-ignored", []audit.Entry{logEntry(t, audit.PolicyLoaded, audit.Policy{Version: "v1"})}, "", ""},
		{"enroll-wrong-nonce", []audit.Entry{withEvidence(t, enroll, "enroll-wrong-nonce.json")}, attest.StepQuote, "evidence does not verify"},
		{"enroll-pcr-altered", []audit.Entry{withEvidence(t, enroll, "enroll-pcr-altered.json")}, attest.StepQuote, "evidence does not verify"},
		{"enroll-ak-public-altered", []audit.Entry{withEvidence(t, enroll, "enroll-ak-public-altered.json")}, attest.StepAK, "evidence does not verify"},
		{"enroll-other-identity", []audit.Entry{withEvidence(t, enroll, "enroll-other-identity.json")}, "",
			"workload/a; its evidence proves EK " + enrolled.EKHash},
		{"enroll-unknown-field", []audit.Entry{withEvidence(t, enroll, "enroll-unknown-field.json")}, "", `unknown field "kind"`},
		{"enroll-version-3", []audit.Entry{withEvidence(t, enroll, "enroll-version-3.json")}, "", "unknown evidence format version 3"},
		{"digest-not-of-evidence", []audit.Entry{edit(t, enroll, func(p *audit.Enrollment) { p.EvidenceDigest = strings.Repeat("00", 32) })},
			"", "the entry says " + strings.Repeat("00", 32)},
		{"entry-names-other-ek", []audit.Entry{edit(t, enroll, func(p *audit.Enrollment) { p.EKHash = strings.Repeat("ab", 32) })},
			"", "its evidence proves EK " + enrolled.EKHash},
		{"renewal-of-unenrolled-device", []audit.Entry{renew}, "", "which the log never enrolled"},
		{"renew-wrong-nonce", []audit.Entry{enroll, withEvidence(t, renew, "renew-wrong-nonce.json")}, attest.StepQuote, "renewal evidence does not verify"},
		{"renew-ak-public-altered", []audit.Entry{enroll, withEvidence(t, renew, "renew-ak-public-altered.json")}, "",
			"is not by the AK EK " + enrolled.EKHash + " enrolled with"},
		{"renew-version-0", []audit.Entry{enroll, withEvidence(t, renew, "renew-version-0.json")}, "", "unknown evidence format version 0"},
	}
	root := readCert(t, filepath.Join(v1, "ek-ca.pem"))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := attest.NewLogChecker([]*x509.Certificate{root})
			var err error
			for i, e := range tt.entries {
				if err = c.Entry(uint64(i), e); err != nil && i < len(tt.entries)-1 {
					t.Fatalf("entry %d: %v", i, err)
				}
			}
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Entry: %v", err)
			case tt.name == "recorded-log" && (c.Enrollments != 1 || c.Renewals != 1):
				t.Fatalf("re-verified %d enrollments, %d renewals; want 1 and 1", c.Enrollments, c.Renewals)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("Entry = %v, want an error containing %q", err, tt.want)
			case tt.step != "" && attest.StepOf(err) != tt.step:
				t.Fatalf("Entry = %v, want step %q", err, tt.step)
			}
		})
	}
}

// recordedEntry decodes the audit entry in testdata/v1/file.
func recordedEntry(t *testing.T, file string) audit.Entry {
	t.Helper()
	e, err := audit.Decode(bytes.TrimSuffix(readFile(t, filepath.Join(v1, file)), []byte("\n")))
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return e
}

// payload decodes e's payload as a P.
func payload[P any](t *testing.T, e audit.Entry) *P {
	t.Helper()
	p, err := e.Payload()
	if err != nil {
		t.Fatal(err)
	}
	return p.(*P)
}

// edit returns e with its payload, of type P, changed by f.
func edit[P any](t *testing.T, e audit.Entry, f func(*P)) audit.Entry {
	t.Helper()
	p := payload[P](t, e)
	f(p)
	return logEntry(t, e.Kind, p)
}

// withEvidence returns e (an enrollment or a renewal) carrying the record
// in testdata/v1/file instead, with its digest when it parses: the defect
// is in the evidence, not in the entry's digest of it.
func withEvidence(t *testing.T, e audit.Entry, file string) audit.Entry {
	t.Helper()
	data := readFile(t, filepath.Join(v1, file))
	var rec interface{ Digest() ([]byte, error) }
	var err error
	if e.Kind == audit.DeviceEnrolled {
		rec, err = attest.ParseEvidence(data)
	} else {
		rec, err = attest.ParseRenewal(data)
	}
	digest := ""
	if err == nil {
		d, err := rec.Digest()
		if err != nil {
			t.Fatal(err)
		}
		digest = hex.EncodeToString(d)
	}
	set := func(ev *json.RawMessage, dig *string) {
		*ev = data
		if digest != "" {
			*dig = digest
		}
	}
	if e.Kind == audit.DeviceEnrolled {
		return edit(t, e, func(p *audit.Enrollment) { set(&p.Evidence, &p.EvidenceDigest) })
	}
	return edit(t, e, func(p *audit.Certificate) { set(&p.Evidence, &p.EvidenceDigest) })
}

func logEntry(t *testing.T, kind audit.Kind, payload any) audit.Entry {
	t.Helper()
	e, err := audit.NewEntry(kind, time.Unix(0, 0), payload)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// A refusal that revoked (an enrollment.denied entry with the refused
// renewal evidence) must rest on the device's own quote: evidence that
// verifies (a policy denial) or fails only at the event log passes; a
// quote over another nonce — which anyone could send — is caught.
func TestLogCheckerRefusals(t *testing.T) {
	enroll, renew := recordedEntry(t, "enroll-entry.json"), recordedEntry(t, "renew-entry.json")
	renewed := payload[audit.Certificate](t, renew)
	refusal := func(t *testing.T, evidence []byte) audit.Entry {
		t.Helper()
		r, err := attest.ParseRenewal(evidence)
		if err != nil {
			t.Fatal(err)
		}
		d, err := r.Digest()
		if err != nil {
			t.Fatal(err)
		}
		return logEntry(t, audit.EnrollmentDenied, audit.Denial{SPIFFEID: renewed.SPIFFEID, EKHash: renewed.EKHash,
			Reason: "refused", EvidenceDigest: hex.EncodeToString(d), Evidence: evidence})
	}
	logAltered := func(t *testing.T) []byte {
		t.Helper()
		r, err := attest.ParseRenewal(readFile(t, filepath.Join(v1, "renew.json")))
		if err != nil {
			t.Fatal(err)
		}
		r.Platform.EventLog = r.Platform.EventLog[:len(r.Platform.EventLog)/2]
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	root := readCert(t, filepath.Join(v1, "ek-ca.pem"))
	for _, tt := range []struct {
		name     string
		evidence []byte
		want     string
	}{
		{"policy-denial-on-authentic-evidence", readFile(t, filepath.Join(v1, "renew.json")), ""},
		{"event-log-no-longer-explains-the-quote", logAltered(t), ""},
		{"quote-over-another-nonce", readFile(t, filepath.Join(v1, "renew-wrong-nonce.json")), "not its own quote"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := attest.NewLogChecker([]*x509.Certificate{root})
			if err := c.Entry(0, enroll); err != nil {
				t.Fatal(err)
			}
			err := c.Entry(1, refusal(t, tt.evidence))
			switch {
			case tt.want == "" && (err != nil || c.Refusals != 1):
				t.Fatalf("Entry = %v, %d refusals checked; want it accepted", err, c.Refusals)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("Entry = %v, want an error containing %q", err, tt.want)
			}
		})
	}
	c := attest.NewLogChecker([]*x509.Certificate{root})
	if err := c.Entry(0, logEntry(t, audit.EnrollmentDenied, audit.Denial{SPIFFEID: "x", EKHash: "y", Reason: "no evidence"})); err != nil || c.Refusals != 0 {
		t.Errorf("a refusal without evidence: %v, %d checked; want it ignored", err, c.Refusals)
	}
}
