package attest_test

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sigil-dev/sigil/attest"
)

var update = flag.Bool("update", false, "rewrite testdata/ from a fresh swtpm enrollment")

// Recorded evidence (testdata/) re-verifies offline, without a TPM; the
// fixtures named after a defect fail at the step that owns it.
func TestRecordedEvidence(t *testing.T) {
	if *update {
		writeFixtures(t)
	}
	v := recordedVerifier(t)
	tests := []struct {
		file string
		step attest.Step
		want string
	}{
		{"evidence-genuine.json", "", ""},
		{"evidence-quote-subset.json", attest.StepQuote, "does not cover SHA-256 PCR 7"},
		{"evidence-wrong-nonce.json", attest.StepQuote, ""},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			_, err := v.Reverify(readEvidence(t, filepath.Join("testdata", tt.file)))
			if tt.step == "" {
				if err != nil {
					t.Fatalf("Reverify: %v", err)
				}
				return
			}
			if attest.StepOf(err) != tt.step || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Reverify = %v, want step %q containing %q", err, tt.step, tt.want)
			}
		})
	}
}

// FuzzReverify feeds mutated evidence — every TPM structure in it is bytes
// an attacker controls — through the whole verification.
func FuzzReverify(f *testing.F) {
	for _, name := range []string{"evidence-genuine.json", "evidence-quote-subset.json", "evidence-wrong-nonce.json"} {
		data, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	v := recordedVerifier(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		ev, err := attest.ParseEvidence(data)
		if err != nil {
			return
		}
		res, err := v.Reverify(ev)
		if err == nil && (res.Key == nil || res.CSR == nil || res.Boot == nil) {
			t.Fatal("Reverify accepted evidence without a key, CSR or boot facts")
		}
	})
}

func recordedVerifier(t testing.TB) *attest.Verifier {
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
	v, err := attest.NewVerifier(attest.Config{EKRoots: []*x509.Certificate{root}, PCRs: requiredPCRs})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func readEvidence(t *testing.T, path string) *attest.Evidence {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := attest.ParseEvidence(data)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

func writeFixtures(t *testing.T) {
	f := newFixture(t)
	res, err := f.verifier.Complete(f.pending, f.req)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, v any) {
		data, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join("testdata", name), append(data, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("evidence-genuine.json", res.Evidence)
	subset := *res.Evidence
	subset.Platform = f.quote(t, f.ak, f.pending.Nonce, []int{0, 1, 2, 3, 4, 5, 6})
	write("evidence-quote-subset.json", &subset)
	wrong := *res.Evidence
	wrong.Platform = f.quote(t, f.ak, []byte("0123456789abcdef0123456789abcdef"), nil)
	write("evidence-wrong-nonce.json", &wrong)
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: f.tp.EKCA.Cert.Raw})
	if err := os.WriteFile("testdata/ek-ca.pem", ca, 0o644); err != nil {
		t.Fatal(err)
	}
}
