package audit_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/sigil-dev/sigil/audit"
)

// Regenerate with: go test ./audit -run TestFixtures -update
var update = flag.Bool("update", false, "rewrite the fixtures in testdata")

var fixtureTime = time.Date(2025, 6, 1, 12, 0, 0, 123_000_000, time.UTC)

// goldenEntries are the valid entry fixtures, one per payload type: the
// entry format is pinned by them.
func goldenEntries() map[string]audit.Entry {
	t := fixtureTime
	evidence := []byte(`{"version":1,"identity":"spiffe://sigil.test/workload/a","ek_public":"AAEC"}`)
	build := func(k audit.Kind, p any) audit.Entry {
		e, err := audit.NewEntry(k, t, p)
		if err != nil {
			panic(err)
		}
		return e
	}
	return map[string]audit.Entry{
		"entry-device-enrolled.json": build(audit.DeviceEnrolled, audit.Enrollment{
			SPIFFEID: "spiffe://sigil.test/workload/a", Serial: "1f", EKHash: "ek", AKHash: "ak", EvidenceDigest: "ed",
			PolicyVersion: "pv", PolicyIDs: []string{"enroll-dev"}, PreviousAK: "ak0", Evidence: evidence}),
		"entry-enrollment-denied.json": build(audit.EnrollmentDenied, audit.Denial{
			SPIFFEID: "spiffe://sigil.test/workload/x", EKHash: "ek", Reason: "attest: quote: PCR 7 <mismatch>", PolicyVersion: "pv"}),
		"entry-certificate-issued.json": build(audit.CertificateIssued, audit.Certificate{
			Serial: "1f", SPIFFEID: "spiffe://sigil.test/workload/a", EKHash: "ek", EvidenceDigest: "ed", PolicyVersion: "pv", NotAfter: t.Add(time.Hour)}),
		"entry-certificate-renewed.json": build(audit.CertificateRenewed, audit.Certificate{
			Serial: "20", SPIFFEID: "spiffe://sigil.test/workload/a", EKHash: "ek", EvidenceDigest: "ed2", NotAfter: t.Add(time.Hour), Evidence: []byte(`{"ek_hash":"ek"}`)}),
		"entry-certificate-revoked.json": build(audit.CertificateRevoked, audit.Certificate{Serial: "1f", EKHash: "ek", Reason: "device-disabled"}),
		"entry-device-disabled.json":     build(audit.DeviceDisabled, audit.Device{EKHash: "ek", Status: "disabled"}),
		"entry-policy-loaded.json":       build(audit.PolicyLoaded, audit.Policy{Version: "pv", Policies: 3}),
		"entry-key-created.json":         build(audit.KeyCreated, audit.Key{Label: "jwt.v1", KID: "kid", Alg: "ES256", Purpose: "jwt"}),
		"entry-token-exchanged.json": build(audit.TokenExchanged, audit.Token{JTI: "j2", ParentJTI: "j1", Sub: "spiffe://sigil.test/workload/a",
			Act: []string{"spiffe://sigil.test/workload/b"}, Aud: []string{"api"}, Scope: "read", Exp: t.Add(5 * time.Minute), CNF: "x5t"}),
		"entry-log-shard.json": build(audit.ShardStarted, audit.ShardLink{Name: "2025-06-01T12Z", Origin: "sigil.test/sigil-audit/0011223344556677/2025-06-01T12Z",
			Previous: &audit.ShardSeal{Origin: "sigil.test/sigil-audit/0011223344556677/2025-06-01T11Z", Start: 1000, Size: 42, Root: bytes.Repeat([]byte{7}, 32),
				Checkpoint: "sigil.test/sigil-audit/0011223344556677/2025-06-01T11Z\n42\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n\n— sigil.test/sigil-audit/0011223344556677/2025-06-01T11Z AAAAAA==\n"}}),
	}
}

// badEntries are entry fixtures named after their defect, derived from a
// golden one, with the error Decode must match.
func badEntries(good []byte) map[string]struct {
	data []byte
	want error
} {
	s := string(good)
	type bad = struct {
		data []byte
		want error
	}
	return map[string]bad{
		"entry-unknown-kind.json":          {[]byte(strings.Replace(s, "key.created", "key.stolen", 1)), audit.ErrUnknownKind},
		"entry-trailing-garbage.json":      {[]byte(s + "garbage"), audit.ErrTrailingData},
		"entry-trailing-newline.json":      {[]byte(s + "\n"), audit.ErrTrailingData},
		"entry-second-object.json":         {[]byte(s + s), audit.ErrTrailingData},
		"entry-unknown-field.json":         {[]byte(strings.Replace(s, `{"kind"`, `{"extra":1,"kind"`, 1)), audit.ErrMalformedEntry},
		"entry-unknown-payload-field.json": {[]byte(strings.Replace(s, `"label"`, `"secret":"x","label"`, 1)), audit.ErrMalformedEntry},
		"entry-wrong-payload.json":         {[]byte(strings.Replace(s, "key.created", "policy.loaded", 1)), audit.ErrMalformedEntry},
		"entry-key-order.json":             {[]byte(strings.Replace(strings.Replace(s, `"alg":"ES256",`, "", 1), `"purpose":"jwt"`, `"purpose":"jwt","alg":"ES256"`, 1)), audit.ErrNonCanonical},
		"entry-whitespace.json":            {[]byte(strings.Replace(s, `"kind":`, `"kind": `, 1)), audit.ErrNonCanonical},
		"entry-local-time.json":            {[]byte(strings.Replace(s, "12:00:00.123Z", "14:00:00.123+02:00", 1)), audit.ErrNonCanonical},
		"entry-duplicate-key.json":         {[]byte(strings.Replace(s, `"kid":"kid"`, `"kid":"x","kid":"kid"`, 1)), audit.ErrNonCanonical},
		"entry-escaped-ascii.json":         {[]byte(strings.Replace(s, `"jwt"`, `"\u006awt"`, 1)), audit.ErrNonCanonical},
		"entry-null-data.json":             {[]byte(s[:strings.Index(s, `"data":`)] + `"data":null}`), audit.ErrNonCanonical},
		"entry-no-time.json":               {[]byte(strings.Replace(s, "2025-06-01T12:00:00.123Z", "0001-01-01T00:00:00Z", 1)), audit.ErrMalformedEntry},
		"entry-not-json.json":              {[]byte(s[:len(s)/2]), audit.ErrMalformedEntry},
	}
}

func fixture(t testing.TB, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatalf("%v (regenerate with: go test ./audit -run TestFixtures -update)", err)
	}
	return data
}

// golden compares data with the fixture, or writes it with -update.
func golden(t *testing.T, name string, data []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(filepath.Join("testdata", name), data, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if got := fixture(t, name); !bytes.Equal(got, data) {
		t.Errorf("%s differs from what the code writes now:\nfile: %s\ncode: %s", name, got, data)
	}
}

// fixtureKey is the test-only log key in testdata/log-key.pem.
func fixtureKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	b, _ := pem.Decode(fixture(t, "log-key.pem"))
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return k.(*ecdsa.PrivateKey)
}

func fixtureVerifier(t testing.TB) *audit.Verifier {
	t.Helper()
	v, err := audit.ParseVerifierPEM(origin, fixture(t, "log-key.pub.pem"))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestFixtures pins the entry format with golden files and, with -update,
// rewrites every fixture, signing the checkpoint ones with the test key.
func TestFixtures(t *testing.T) {
	for name, e := range goldenEntries() {
		data, err := audit.Encode(e)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		golden(t, name, data)
	}
	for name, b := range badEntries(fixture(t, "entry-key-created.json")) {
		golden(t, name, b.data)
	}
	if *update {
		writeKeyFixtures(t)
		writeCheckpointFixtures(t)
	}
}

func writeKeyFixtures(t *testing.T) {
	if _, err := os.Stat(filepath.Join("testdata", "log-key.pem")); err == nil {
		return // keep the key: the signed fixtures and the public key depend on it
	}
	k := newKey(t)
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := x509.MarshalPKIXPublicKey(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "log-key.pem", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	golden(t, "log-key.pub.pem", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}))
}

// fixtureCheckpoint is the checkpoint of the fixtures: 4 entries.
func fixtureCheckpoint(t testing.TB) audit.Checkpoint {
	root := bytes.Repeat([]byte{0xa5}, audit.HashSize)
	return audit.Checkpoint{Origin: origin, Size: 4, Hash: root, Time: fixtureTime}
}

func writeCheckpointFixtures(t *testing.T) {
	s := newSigner(t, origin, fixtureKey(t))
	cp := fixtureCheckpoint(t)
	good, err := s.Sign(cp)
	if err != nil {
		t.Fatal(err)
	}
	text := string(good[:bytes.Index(good, []byte("\n\n"))+1])
	signText := func(text string, signers ...note.Signer) []byte {
		n, err := note.Sign(&note.Note{Text: text}, signers...)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	noTime := cp
	noTime.Time = time.Time{}
	other := newSigner(t, origin, newKey(t))
	witness := newSigner(t, "witness.example/w1", newKey(t))
	b64root := base64.StdEncoding.EncodeToString(cp.Hash)
	for name, data := range map[string][]byte{
		"checkpoint.note":                   good,
		"checkpoint-no-time.note":           must(t)(s.Sign(noTime)),
		"checkpoint-cosigned.note":          signText(text, s.NoteSigner(), witness.NoteSigner()),
		"checkpoint-other-key.note":         must(t)(other.Sign(cp)),
		"checkpoint-bad-signature.note":     flipSignature(t, good),
		"checkpoint-wrong-origin.note":      signText(strings.Replace(text, origin, "evil.example/log", 1), s.NoteSigner()),
		"checkpoint-trailing-garbage.note":  append(bytes.Clone(good), "garbage"...),
		"checkpoint-leading-zero-size.note": signText(strings.Replace(text, "\n4\n", "\n04\n", 1), s.NoteSigner()),
		"checkpoint-unknown-extension.note": signText(text+"color blue\n", s.NoteSigner()),
		"checkpoint-short-hash.note":        signText(strings.Replace(text, b64root, b64root[:24], 1), s.NoteSigner()),
		"checkpoint-local-time.note":        signText(strings.Replace(text, "12:00:00.123Z", "14:00:00.123+02:00", 1), s.NoteSigner()),
		"checkpoint-unsigned.note":          []byte(text),
	} {
		golden(t, name, data)
	}
}

// flipSignature changes one bit of the signature (not the key ID).
func flipSignature(t *testing.T, n []byte) []byte {
	i := bytes.LastIndexByte(n[:len(n)-1], ' ')
	sig, err := base64.StdEncoding.DecodeString(string(n[i+1 : len(n)-1]))
	if err != nil {
		t.Fatal(err)
	}
	sig[len(sig)-1] ^= 1
	return append(append(bytes.Clone(n[:i+1]), base64.StdEncoding.EncodeToString(sig)...), '\n')
}

func must(t testing.TB) func([]byte, error) []byte {
	return func(b []byte, err error) []byte {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
}
