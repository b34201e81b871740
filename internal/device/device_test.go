package device_test

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sigil-dev/sigil/attest"
	"github.com/sigil-dev/sigil/internal/device"
	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/policy"
)

// v1 holds a recorded enrollment and renewal of one swtpm (see attest).
const v1 = "../../attest/testdata/v1"

// The serial is the certificate's serial number in hex, as the audit entry
// of the recorded enrollment names its certificate.
func TestSerial(t *testing.T) {
	cert := readCert(t, "enroll-cert.pem")
	entry := readFile(t, "enroll-entry.json")
	got := device.Serial(cert)
	if got != cert.SerialNumber.Text(16) || !bytes.Contains(entry, []byte(`"serial":"`+got+`"`)) {
		t.Errorf("Serial = %q, want the hex serial %s the audit entry names", got, cert.SerialNumber.Text(16))
	}
}

// An enrollment's facts are what its verified evidence proves: EK hash and
// issuer, AK hash, the quoted PCRs and the replayed events.
func TestFacts(t *testing.T) {
	res := enrollment(t)
	f := device.Facts(res)
	if hex.EncodeToString(f.EKHash) != res.EK.Hash || hex.EncodeToString(f.AKHash) != res.AK.Hash {
		t.Errorf("EK %x AK %x, want %s and %s", f.EKHash, f.AKHash, res.EK.Hash, res.AK.Hash)
	}
	if f.EKIssuer != res.EK.Issuer || !strings.Contains(f.EKIssuer, "sigil test EK CA") {
		t.Errorf("EK issuer %q, want the test EK CA %q", f.EKIssuer, res.EK.Issuer)
	}
	checkBoot(t, f, res.Boot)
}

// A renewal's facts are the device record's EK with the AK that quoted and
// the fresh boot: for the recorded device, the enrollment's EK and AK.
func TestRenewalFacts(t *testing.T) {
	res := enrollment(t)
	r, boot := renewal(t)
	dev := store.Device{EKHash: res.EK.Hash, EKCertDER: res.Evidence.EKCertificate, AKHash: res.AK.Hash, AKPublic: res.Evidence.AK.Public}
	tests := []struct {
		name   string
		ekCert []byte
		issuer string
		err    string
	}{
		{name: "EK certificate", ekCert: dev.EKCertDER, issuer: res.EK.Issuer},
		{name: "allow-listed EK", ekCert: nil, issuer: ""},
		{name: "EK certificate unreadable", ekCert: []byte("not DER"), err: "device: EK certificate of " + res.EK.Hash},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := dev
			d.EKCertDER = tt.ekCert
			f, err := device.RenewalFacts(d, r, boot)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("RenewalFacts error %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			enrolled := device.Facts(res)
			if !bytes.Equal(f.EKHash, enrolled.EKHash) || !bytes.Equal(f.AKHash, enrolled.AKHash) || f.EKIssuer != tt.issuer {
				t.Errorf("EK %x AK %x issuer %q, want the enrollment's EK %x and AK %x, issuer %q",
					f.EKHash, f.AKHash, f.EKIssuer, enrolled.EKHash, enrolled.AKHash, tt.issuer)
			}
			if ak := sha256.Sum256(r.AKPublic); !bytes.Equal(f.AKHash, ak[:]) {
				t.Errorf("AK hash %x, want the hash of the AK that quoted %x", f.AKHash, ak)
			}
			checkBoot(t, f, boot)
		})
	}
}

func checkBoot(t *testing.T, f policy.DeviceFacts, boot *attest.Boot) {
	t.Helper()
	if len(f.PCRs) != len(boot.PCRs) || len(f.PCRs) == 0 || f.SecureBoot != boot.SecureBoot {
		t.Errorf("%d PCRs secure boot %v, want the %d quoted, secure boot %v", len(f.PCRs), f.SecureBoot, len(boot.PCRs), boot.SecureBoot)
	}
	if len(f.EventDigests) != len(boot.EventDigests) || len(f.EventDigests) == 0 {
		t.Fatalf("%d event digests, want the %d replayed", len(f.EventDigests), len(boot.EventDigests))
	}
	for i, d := range f.EventDigests {
		if hex.EncodeToString(d) != boot.EventDigests[i] {
			t.Errorf("event digest %d is %x, want %s", i, d, boot.EventDigests[i])
		}
	}
}

func enrollment(t *testing.T) *attest.Result {
	t.Helper()
	ev, err := attest.ParseEvidence(readFile(t, "enroll.json"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := verifier(t).Reverify(ev)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func renewal(t *testing.T) (*attest.Renewal, *attest.Boot) {
	t.Helper()
	r, err := attest.ParseRenewal(readFile(t, "renew.json"))
	if err != nil {
		t.Fatal(err)
	}
	boot, _, err := verifier(t).VerifyRenewal(r, readCert(t, "renew-cert.pem").PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return r, boot
}

func verifier(t *testing.T) *attest.Verifier {
	t.Helper()
	v, err := attest.NewVerifier(attest.Config{EKRoots: []*x509.Certificate{readCert(t, "ek-ca.pem")}, PCRs: []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func readFile(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(v1, name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func readCert(t *testing.T, name string) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(readFile(t, name))
	if block == nil {
		t.Fatalf("%s: no PEM block", name)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}
