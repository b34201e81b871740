package main_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sigil-dev/sigil/audit"
	"github.com/sigil-dev/sigil/testenv"
)

// evidenceForTools runs `sigil audit evidence` on a real sigild's export
// for the enrollment and the renewal it holds: tpm2-tools'
// tpm2_checkquote accepts each quote, and refuses it with one PCR byte
// flipped. A serial the log never issued is an error that says so.
func evidenceForTools(t *testing.T, s *stack, export string) {
	serials := map[audit.Kind]string{}
	for _, e := range exportedEntries(t, export) {
		if e.Kind != audit.DeviceEnrolled && e.Kind != audit.CertificateRenewed {
			continue
		}
		p, err := e.Payload()
		if err != nil {
			t.Fatal(err)
		}
		switch p := p.(type) {
		case *audit.Enrollment:
			serials[e.Kind] = p.Serial
		case *audit.Certificate:
			serials[e.Kind] = p.Serial
		}
	}
	for _, kind := range []audit.Kind{audit.DeviceEnrolled, audit.CertificateRenewed} {
		t.Run(string(kind), func(t *testing.T) {
			if serials[kind] == "" {
				t.Fatalf("the export has no %s entry", kind)
			}
			out := filepath.Join(t.TempDir(), "evidence")
			if got, code := s.run("sigil", "audit", "evidence", "--dir", export, "--serial", serials[kind], "--out", out); code != 0 {
				t.Fatalf("sigil audit evidence: %s", got)
			}
			if got, ok := testenv.CheckQuote(t, out); !ok {
				t.Fatalf("tpm2_checkquote refused the quote:\n%s", got)
			}
			pcrs := filepath.Join(out, "pcrs.bin")
			b := readFileT(t, pcrs)
			b[132+4+4+2] ^= 1 // the first byte of PCR 0's value
			if err := os.WriteFile(pcrs, b, 0o644); err != nil {
				t.Fatal(err)
			}
			if got, ok := testenv.CheckQuote(t, out); ok {
				t.Fatalf("tpm2_checkquote accepted a flipped PCR byte:\n%s", got)
			}
		})
	}
	got, code := s.run("sigil", "audit", "evidence", "--dir", export, "--serial", "0badc0de", "--out", t.TempDir())
	if code != 1 || !strings.Contains(got, "issued certificate 0badc0de") {
		t.Errorf("unknown serial: exit %d, %s", code, got)
	}
}

// exportedEntries decodes every entry of an export.
func exportedEntries(t *testing.T, dir string) []audit.Entry {
	t.Helper()
	data, err := audit.DirSource(dir).Entries(t.Context(), 0, audit.BundleSize)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]audit.Entry, len(data))
	for i, d := range data {
		if out[i], err = audit.Decode(d); err != nil {
			t.Fatal(err)
		}
	}
	return out
}
