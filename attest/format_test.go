package attest_test

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/attest"
	"github.com/sigil-dev/sigil/audit"
	"github.com/sigil-dev/sigil/ca"
)

// v1 is where the records written by evidence format version 1 live: an
// enrollment and a renewal as the store kept them (the code that wrote
// them embedded the HTTP types), the certificates issued on them, their
// audit entries and the EK CA; and variants of them, each named after its
// defect, that must not pass.
const v1 = "testdata/v1"

// Records written before the evidence format got types of its own still
// parse, encode to the same bytes, hash to the digest in the certificate
// issued on them, and re-verify; the audit log carries them byte for byte.
func TestEvidenceFormatV1(t *testing.T) {
	t.Run("enroll", func(t *testing.T) {
		data := readFile(t, filepath.Join(v1, "enroll.json"))
		cert := readCert(t, filepath.Join(v1, "enroll-cert.pem"))
		ev, err := attest.ParseEvidence(data)
		if err != nil {
			t.Fatalf("ParseEvidence: %v", err)
		}
		checkStable(t, data, ev, cert)
		res, err := v1Verifier(t).Reverify(ev)
		if err != nil {
			t.Fatalf("Reverify: %v", err)
		}
		if !publicEqual(res.Key, cert.PublicKey) {
			t.Error("re-verified evidence certifies another key than the certificate's")
		}
		var p audit.Enrollment
		checkEntry(t, "enroll-entry.json", audit.DeviceEnrolled, &p)
		if !bytes.Equal(p.Evidence, data) || p.EvidenceDigest != digestOf(t, cert) || p.AKHash != res.AK.Hash {
			t.Error("the audit entry does not carry the stored record, its digest and AK")
		}
	})
	t.Run("renew", func(t *testing.T) {
		data := readFile(t, filepath.Join(v1, "renew.json"))
		cert := readCert(t, filepath.Join(v1, "renew-cert.pem"))
		r, err := attest.ParseRenewal(data)
		if err != nil {
			t.Fatalf("ParseRenewal: %v", err)
		}
		checkStable(t, data, r, cert)
		if _, _, err := v1Verifier(t).VerifyRenewal(r, cert.PublicKey); err != nil {
			t.Fatalf("VerifyRenewal: %v", err)
		}
		var p audit.Certificate
		checkEntry(t, "renew-entry.json", audit.CertificateRenewed, &p)
		if !bytes.Equal(p.Evidence, data) || p.EvidenceDigest != digestOf(t, cert) {
			t.Error("the audit entry does not carry the stored record and its digest")
		}
	})
}

// checkStable checks that rec, parsed from data, encodes to data again and
// that its digest is the one in the certificate issued on it.
func checkStable(t *testing.T, data []byte, rec interface{ Digest() ([]byte, error) }, cert *x509.Certificate) {
	t.Helper()
	again, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again, data) {
		t.Errorf("the record encodes to other bytes than were stored:\n got %.200s\nwant %.200s", again, data)
	}
	d, err := rec.Digest()
	if err != nil {
		t.Fatalf("Digest: %v", err)
	}
	if sum := sha256.Sum256(data); !bytes.Equal(d, sum[:]) {
		t.Errorf("Digest %x, the stored bytes hash to %x", d, sum)
	}
	if got, want := hex.EncodeToString(d), digestOf(t, cert); got != want {
		t.Errorf("Digest %s, the certificate's evidence extension says %s", got, want)
	}
}

// Tampered version 1 records fail: those the TPM signed at the step that
// owns the field, the rest by no longer hashing to the digest in the
// certificate; records this version cannot read fail to parse.
func TestEvidenceFormatV1Tampered(t *testing.T) {
	if *update {
		writeTampered(t)
	}
	enrollCert := readCert(t, filepath.Join(v1, "enroll-cert.pem"))
	renewCert := readCert(t, filepath.Join(v1, "renew-cert.pem"))
	tests := []struct {
		file  string
		parse string // ParseEvidence / ParseRenewal fails with this
		step  attest.Step
	}{
		{file: "enroll-other-identity.json"},
		{file: "enroll-verified-before-ek-certificate.json", step: attest.StepEK},
		{file: "enroll-ak-public-altered.json", step: attest.StepAK},
		{file: "enroll-wrong-nonce.json", step: attest.StepQuote},
		{file: "enroll-pcr-altered.json", step: attest.StepQuote},
		{file: "enroll-event-log-truncated.json", step: attest.StepEventLog},
		{file: "enroll-key-signature-altered.json", step: attest.StepKey},
		{file: "enroll-version-3.json", parse: "unknown evidence format version 3, want 1 or 2"},
		{file: "enroll-version-2-without-workload.json", parse: "version 2 record without workload facts"},
		{file: "enroll-version-1-with-workload.json", parse: "version 1 record carries workload facts"},
		{file: "enroll-unknown-field.json", parse: `unknown field "kind"`},
		{file: "enroll-trailing-data.json", parse: "after top-level value"},
		{file: "renew-other-previous-serial.json"},
		{file: "renew-wrong-nonce.json", step: attest.StepQuote},
		{file: "renew-ak-public-altered.json", step: attest.StepQuote},
		{file: "renew-version-0.json", parse: "unknown evidence format version 0, want 1 or 2"},
	}
	v := v1Verifier(t)
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			data := readFile(t, filepath.Join(v1, tt.file))
			var (
				rec  interface{ Digest() ([]byte, error) }
				cert *x509.Certificate
				err  error
			)
			if strings.HasPrefix(tt.file, "enroll-") {
				var ev *attest.Evidence
				if ev, err = attest.ParseEvidence(data); err == nil {
					rec, cert = ev, enrollCert
					_, err = v.Reverify(ev)
				}
			} else {
				var r *attest.Renewal
				if r, err = attest.ParseRenewal(data); err == nil {
					rec, cert = r, renewCert
					_, _, err = v.VerifyRenewal(r, renewCert.PublicKey)
				}
			}
			if tt.parse != "" {
				if rec != nil || err == nil || !strings.Contains(err.Error(), tt.parse) {
					t.Fatalf("parse error %v, want one containing %q", err, tt.parse)
				}
				if tt.file == "enroll-version-3.json" && !errors.Is(err, attest.ErrEvidenceVersion) {
					t.Errorf("error %v is not ErrEvidenceVersion", err)
				}
				return
			}
			if rec == nil {
				t.Fatalf("parse: %v", err)
			}
			if attest.StepOf(err) != tt.step {
				t.Errorf("verification error %v, want step %q", err, tt.step)
			}
			d, err := rec.Digest()
			if err != nil {
				t.Fatal(err)
			}
			if hex.EncodeToString(d) == digestOf(t, cert) {
				t.Error("the tampered record still hashes to the certificate's evidence digest")
			}
		})
	}
}

// FuzzParseEvidence feeds mutated records to the parsers: whatever they
// accept encodes again and has a digest.
func FuzzParseEvidence(f *testing.F) {
	for _, name := range []string{"enroll.json", "renew.json", "enroll-unknown-field.json", "enroll-version-3.json", "enroll-version-1-with-workload.json"} {
		f.Add(readFile(f, filepath.Join(v1, name)))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if ev, err := attest.ParseEvidence(data); err == nil {
			if _, err := ev.Digest(); err != nil {
				t.Fatalf("parsed evidence has no digest: %v", err)
			}
		}
		if r, err := attest.ParseRenewal(data); err == nil {
			if _, err := r.Digest(); err != nil {
				t.Fatalf("parsed renewal has no digest: %v", err)
			}
		}
	})
}

func v1Verifier(t testing.TB) *attest.Verifier {
	t.Helper()
	root := readCert(t, filepath.Join(v1, "ek-ca.pem"))
	v, err := attest.NewVerifier(attest.Config{EKRoots: []*x509.Certificate{root}, PCRs: requiredPCRs})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// checkEntry decodes the audit entry in file, of kind, into payload.
func checkEntry(t *testing.T, file string, kind audit.Kind, payload any) {
	t.Helper()
	e, err := audit.Decode(readFile(t, filepath.Join(v1, file)))
	if err != nil {
		t.Fatal(err)
	}
	if e.Kind != kind {
		t.Fatalf("%s is a %s entry, want %s", file, e.Kind, kind)
	}
	if err := json.Unmarshal(e.Data, payload); err != nil {
		t.Fatal(err)
	}
}

// digestOf is the evidence digest in cert's extension, hex.
func digestOf(t *testing.T, cert *x509.Certificate) string {
	t.Helper()
	ext, err := ca.EvidenceOf(cert)
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(ext.Digest)
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func readCert(t testing.TB, path string) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(readFile(t, path))
	if block == nil {
		t.Fatalf("%s: no PEM block", path)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// writeTampered derives the tampered records from the version 1 records by
// editing their bytes, so that everything but the defect stays as stored.
func writeTampered(t *testing.T) {
	enroll := string(readFile(t, filepath.Join(v1, "enroll.json")))
	renew := string(readFile(t, filepath.Join(v1, "renew.json")))
	var ev attest.Evidence
	var r attest.Renewal
	if json.Unmarshal([]byte(enroll), &ev) != nil || json.Unmarshal([]byte(renew), &r) != nil {
		t.Fatal("version 1 records do not decode")
	}
	otherNonce := bytes.Repeat([]byte{1}, attest.NonceSize)
	write := func(name, data string) {
		if err := os.WriteFile(filepath.Join(v1, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("enroll-other-identity.json", replaceField(t, enroll, "identity", ev.Identity, ev.Identity+"-b"))
	write("enroll-verified-before-ek-certificate.json", replaceField(t, enroll, "verified_at",
		ev.VerifiedAt.Format(time.RFC3339Nano), "2000-01-01T00:00:00Z"))
	write("enroll-ak-public-altered.json", replaceBytes(t, enroll, "public", ev.AK.Public, flipLast(ev.AK.Public)))
	write("enroll-wrong-nonce.json", replaceBytes(t, enroll, "nonce", ev.Nonce, otherNonce))
	write("enroll-pcr-altered.json", replaceBytes(t, enroll, "digest", ev.Platform.PCRs[0].Digest, flipLast(ev.Platform.PCRs[0].Digest)))
	log := ev.Platform.EventLog
	write("enroll-event-log-truncated.json", replaceBytes(t, enroll, "event_log", log, log[:len(log)-16]))
	write("enroll-key-signature-altered.json", replaceBytes(t, enroll, "create_signature", ev.Key.CreateSignature, flipLast(ev.Key.CreateSignature)))
	write("enroll-version-3.json", replaceField(t, enroll, "version", "1", "3"))
	write("enroll-version-2-without-workload.json", replaceField(t, enroll, "version", "1", "2"))
	write("enroll-version-1-with-workload.json", enroll[:len(enroll)-1]+`,"workload":{"asserted_by":"host-agent","uid":1000,"gid":1000,"pid":42,"exe":"/usr/bin/payments","exe_sha256":"`+strings.Repeat("ab", 32)+`","cgroup":"/system.slice/payments.service","unit":"payments.service"}}`)
	write("enroll-unknown-field.json", `{"kind":"enroll",`+enroll[1:])
	write("enroll-trailing-data.json", enroll+"{}")
	write("renew-other-previous-serial.json", replaceField(t, renew, "previous_serial", r.Previous, "01"))
	write("renew-wrong-nonce.json", replaceBytes(t, renew, "nonce", r.Nonce, otherNonce))
	write("renew-ak-public-altered.json", replaceBytes(t, renew, "ak_public", r.AKPublic, flipLast(r.AKPublic)))
	write("renew-version-0.json", replaceField(t, renew, "version", "1", "0"))
}

// replaceField replaces the last occurrence of field's value old, a string
// or a number as encoded, by new.
func replaceField(t *testing.T, data, field, old, new string) string {
	t.Helper()
	for _, q := range []string{`"`, ""} {
		from := `"` + field + `":` + q + old + q
		if i := strings.LastIndex(data, from); i >= 0 {
			return data[:i] + `"` + field + `":` + q + new + q + data[i+len(from):]
		}
	}
	t.Fatalf("no %s %q in the record", field, old)
	return ""
}

func replaceBytes(t *testing.T, data, field string, old, new []byte) string {
	t.Helper()
	return replaceField(t, data, field, base64.StdEncoding.EncodeToString(old), base64.StdEncoding.EncodeToString(new))
}

func flipLast(b []byte) []byte {
	b = bytes.Clone(b)
	b[len(b)-1] ^= 1
	return b
}

// TestEvidenceFormatV2 records host agent facts in version 1 evidence: the
// record becomes version 2, parses back with the facts marked as the host
// agent's, still re-verifies, and hashes differently from the version 1
// record, which itself is unchanged.
func TestEvidenceFormatV2(t *testing.T) {
	data := readFile(t, filepath.Join(v1, "enroll.json"))
	ev, err := attest.ParseEvidence(data)
	if err != nil {
		t.Fatal(err)
	}
	v1Digest, _ := ev.Digest()
	w := &attest.Workload{AssertedBy: attest.AssertedByHostAgent, UID: 1001, GID: 1001, PID: 7, Exe: "/usr/bin/payments",
		ExeSHA256: strings.Repeat("cd", 32), Cgroup: "/system.slice/payments.service", Unit: "payments.service"}
	if err := ev.SetWorkload(&attest.Workload{AssertedBy: "tpm", Exe: "/x", ExeSHA256: w.ExeSHA256}); err == nil {
		t.Fatal("SetWorkload accepted facts not asserted by the host agent")
	}
	if err := ev.SetWorkload(w); err != nil {
		t.Fatal(err)
	}
	enc, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	got, err := attest.ParseEvidence(enc)
	if err != nil {
		t.Fatalf("ParseEvidence(version 2): %v", err)
	}
	if got.Version != attest.WorkloadEvidenceVersion || got.Workload == nil || *got.Workload != *w {
		t.Fatalf("parsed version %d workload %+v, want version 2 with %+v", got.Version, got.Workload, w)
	}
	if _, err := v1Verifier(t).Reverify(got); err != nil {
		t.Errorf("version 2 record does not re-verify: %v", err)
	}
	d, _ := got.Digest()
	if bytes.Equal(d, v1Digest) {
		t.Error("version 2 record hashes like the version 1 record it extends")
	}
}
