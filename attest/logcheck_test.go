package attest_test

import (
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/attest"
	"github.com/sigil-dev/sigil/audit"
)

// The audit log checker re-verifies the recorded evidence of logged
// enrollments and renewals; each tampered entry is named after its defect
// and fails with the reason an auditor reads.
func TestLogChecker(t *testing.T) {
	genuine := readEvidence(t, filepath.Join("testdata", "evidence-genuine.json"))
	res, err := recordedVerifier(t).Reverify(genuine)
	if err != nil {
		t.Fatalf("Reverify the genuine evidence: %v", err)
	}
	// enrolled is the entry sigild logs for the genuine enrollment.
	enrolled := audit.Enrollment{SPIFFEID: genuine.Identity, Serial: "01", EKHash: res.EK.Hash, AKHash: res.AK.Hash}
	enrollment := func(ev *attest.Evidence, edit func(*audit.Enrollment)) audit.Entry {
		p := enrolled
		p.Evidence, p.EvidenceDigest = evidenceJSON(t, ev), digestHex(t, ev)
		if edit != nil {
			edit(&p)
		}
		return logEntry(t, audit.DeviceEnrolled, p)
	}
	renewal := func(r *attest.Renewal) audit.Entry {
		data, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		return logEntry(t, audit.CertificateRenewed, audit.Certificate{Serial: "02", EKHash: r.EKHash, Evidence: data, EvidenceDigest: digestHex(t, r)})
	}
	tests := []struct {
		name    string
		entries []audit.Entry
		step    attest.Step // of the last entry's failure, if any
		want    string      // in the last entry's error; "" for none
	}{
		{"genuine-enrollment", []audit.Entry{enrollment(genuine, nil)}, "", ""},
		{"other-kinds-ignored", []audit.Entry{logEntry(t, audit.PolicyLoaded, audit.Policy{Version: "v1"})}, "", ""},
		{"evidence-wrong-nonce", []audit.Entry{enrollment(readEvidence(t, "testdata/evidence-wrong-nonce.json"), nil)},
			attest.StepQuote, "evidence does not verify"},
		{"evidence-quote-subset", []audit.Entry{enrollment(readEvidence(t, "testdata/evidence-quote-subset.json"), nil)},
			attest.StepQuote, "does not cover SHA-256 PCR 7"},
		{"digest-not-of-evidence", []audit.Entry{enrollment(genuine, func(p *audit.Enrollment) { p.EvidenceDigest = strings.Repeat("00", 32) })},
			"", "the entry says " + strings.Repeat("00", 32)},
		{"entry-names-other-ek", []audit.Entry{enrollment(genuine, func(p *audit.Enrollment) { p.EKHash = strings.Repeat("ab", 32) })},
			"", "its evidence proves EK " + res.EK.Hash},
		{"entry-names-other-identity", []audit.Entry{enrollment(genuine, func(p *audit.Enrollment) { p.SPIFFEID = "spiffe://sigil.test/workload/admin" })},
			"", "workload/admin; its evidence proves EK " + res.EK.Hash + ", AK " + res.AK.Hash + ", " + genuine.Identity},
		{"evidence-unknown-field", []audit.Entry{enrollment(genuine, func(p *audit.Enrollment) {
			p.Evidence = append([]byte(`{"forged":true,`), p.Evidence[1:]...)
		})}, "", `unknown field "forged"`},
		{"renewal-of-unenrolled-device", []audit.Entry{renewal(&attest.Renewal{Version: 1, EKHash: res.EK.Hash, AKPublic: genuine.AK.Public})},
			"", "which the log never enrolled"},
		{"renewal-by-other-ak", []audit.Entry{enrollment(genuine, nil), renewal(&attest.Renewal{Version: 1, EKHash: res.EK.Hash, AKPublic: []byte("another AK")})},
			"", "is not by the AK EK " + res.EK.Hash + " enrolled with"},
		{"renewal-without-csr", []audit.Entry{enrollment(genuine, nil), renewal(&attest.Renewal{Version: 1, EKHash: res.EK.Hash, AKPublic: genuine.AK.Public})},
			"", "renewal CSR"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := attest.NewLogChecker(recordedRoots(t))
			var err error
			for i, e := range tt.entries {
				if err = c.Entry(uint64(i), e); err != nil && i < len(tt.entries)-1 {
					t.Fatalf("entry %d: %v", i, err)
				}
			}
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Entry: %v", err)
			case tt.want == "" && tt.name == "genuine-enrollment" && c.Enrollments != 1:
				t.Fatalf("Enrollments = %d, want 1", c.Enrollments)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("Entry = %v, want an error containing %q", err, tt.want)
			case tt.step != "" && attest.StepOf(err) != tt.step:
				t.Fatalf("Entry = %v, want step %q", err, tt.step)
			}
		})
	}
}

// recordedRoots is the EK CA of the recorded evidence.
func recordedRoots(t testing.TB) []*x509.Certificate {
	t.Helper()
	data, err := os.ReadFile("testdata/ek-ca.pem")
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	root, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return []*x509.Certificate{root}
}

// evidenceJSON is ev as sigild stores and logs it.
func evidenceJSON(t *testing.T, ev *attest.Evidence) json.RawMessage {
	t.Helper()
	data, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func digestHex(t *testing.T, ev interface{ Digest() ([]byte, error) }) string {
	t.Helper()
	d, err := ev.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(d)
}

func logEntry(t *testing.T, kind audit.Kind, payload any) audit.Entry {
	t.Helper()
	e, err := audit.NewEntry(kind, time.Unix(0, 0), payload)
	if err != nil {
		t.Fatal(err)
	}
	return e
}
