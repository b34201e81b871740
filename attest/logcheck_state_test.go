package attest_test

import (
	"crypto/x509"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sigil-dev/sigil/attest"
)

// A LogChecker's context (the devices enrolled so far) survives a state
// file: a new checker restored from it re-verifies a renewal whose
// enrollment it never read, with the AK that enrollment pinned; restored
// from an empty context it refuses it. Anything but MarshalBinary's
// output is refused.
func TestLogCheckerContext(t *testing.T) {
	t.Parallel()
	enroll, renew := recordedEntry(t, "enroll-entry.json"), recordedEntry(t, "renew-entry.json")
	roots := []*x509.Certificate{readCert(t, filepath.Join(v1, "ek-ca.pem"))}
	first := attest.NewLogChecker(roots)
	empty, err := first.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if err := first.Entry(0, enroll); err != nil {
		t.Fatal(err)
	}
	saved, err := first.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	next := attest.NewLogChecker(roots)
	if err := next.UnmarshalBinary(saved); err != nil {
		t.Fatal(err)
	}
	if err := next.Entry(1, renew); err != nil || next.Renewals != 1 || next.Enrollments != 0 {
		t.Fatalf("renewal after restoring the context: %v (%d renewals)", err, next.Renewals)
	}
	if err := next.UnmarshalBinary(empty); err != nil {
		t.Fatal(err)
	}
	if err := next.Entry(1, renew); err == nil || !strings.Contains(err.Error(), "never enrolled") || next.Renewals != 0 {
		t.Fatalf("renewal with an empty context: %v, want refused", err)
	}
	for _, bad := range []string{``, `{}x`, `{"devices":{"ek":{"ak_sha256":""}}}`, `{"devices":{"ek":{"ak_sha256":"AAAA"}}}`, `{"devices":{},"extra":1}`, `[]`} {
		if err := next.UnmarshalBinary([]byte(bad)); err == nil {
			t.Errorf("UnmarshalBinary(%q) accepted it", bad)
		}
	}
}
