package main_test

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sigil-dev/sigil/api"
)

// Attack (issue 11, finding 5) on the dev stack: the audit entries name
// users, scopes, chains and denial reasons. Without a client certificate,
// or as an enrolled workload that is not an audit reader, they are not
// served and `sigil audit verify` says so rather than calling the log bad;
// the checkpoint stays public; the configured auditor verifies over the
// API. sigild's log and database and an export are not readable by other
// users.
func TestAuditReadAccessEndToEnd(t *testing.T) {
	s := startStack(t, "1")
	orders := filepath.Join(s.dir, "orders")
	if out, code := s.enroll(0, "spiffe://sigil.test/workload/orders", orders); code != 0 {
		t.Fatalf("enroll: %s", out)
	}
	roots := x509.NewCertPool()
	for _, c := range readPEM(t, s.env["SIGIL_CA_BUNDLE"]) {
		roots.AddCert(c)
	}
	anonymous := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	defer anonymous.CloseIdleConnections()
	for path, want := range map[string]int{
		api.PathAuditEntries + "?start=0&end=1":    http.StatusUnauthorized,
		api.PathAuditInclusion + "?index=0&size=1": http.StatusUnauthorized,
		api.PathAuditCheckpoint:                    http.StatusOK,
		api.PathAuditConsistency + "?from=1&to=1":  http.StatusOK,
		api.PathLog + "tile/entries/000.p/1":       http.StatusUnauthorized,
		api.PathLogCheckpoint:                      http.StatusOK,
		api.PathLog + "tile/0/000.p/1":             http.StatusOK,
	} {
		resp, err := anonymous.Get(s.env["SIGIL_SERVER"] + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s without a certificate: %d %s, want %d", path, resp.StatusCode, body, want)
		}
	}

	state := filepath.Join(t.TempDir(), "checkpoint")
	for _, tt := range []struct {
		name, want string
		args       []string
	}{
		{"anonymous", "401", nil},
		{"not-a-reader", "403", []string{"--auditor", orders}},
	} {
		out, code := s.run("sigil", append([]string{"audit", "verify", "--state", state}, tt.args...)...)
		if code != 1 || !strings.Contains(out, "sigild does not serve audit entries to this caller") || !strings.Contains(out, tt.want) {
			t.Errorf("audit verify %s: exit %d, want 1 naming the refusal (%s):\n%s", tt.name, code, tt.want, out)
		}
	}
	out, code := s.run("sigil", "audit", "verify", "--auditor", s.auditor(t), "--wait", "10s", "--state", state)
	if code != 0 || !strings.Contains(out, "log verified: OK") || !strings.Contains(out, "C2SP tlog-tiles") {
		t.Fatalf("audit verify as the auditor, from tiles: exit %d\n%s", code, out)
	}
	if out, code := s.enroll(0, "spiffe://sigil.test/workload/billing", filepath.Join(s.dir, "billing")); code != 0 {
		t.Fatalf("enroll: %s", out)
	}
	out, code = s.run("sigil", "audit", "verify", "--auditor", s.auditor(t), "--wait", "10s", "--state", state)
	if code != 0 || !strings.Contains(out, "log verified: OK") || !strings.Contains(out, "(incremental: from") || !strings.Contains(out, "1 enrollments") {
		t.Fatalf("second audit verify, incremental from tiles (the new enrollment's evidence re-verified): exit %d\n%s", code, out)
	}

	private := []string{filepath.Join(s.dir, "sigild.log"), filepath.Join(s.dir, "sigil.db"), filepath.Join(s.dir, "init.out")}
	export := exportLog(t, s)
	err := filepath.WalkDir(export, func(path string, _ fs.DirEntry, err error) error {
		private = append(private, path)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range private {
		if mode := statMode(t, path); mode&0o077 != 0 {
			t.Errorf("%s has mode %v: readable by others", path, mode)
		}
	}
}

func statMode(t *testing.T, path string) fs.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}
