package ssf_test

import (
	"bufio"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/sigil-dev/sigil/internal/ssf"
)

// python is Debian's, with python3-jwt (make deps installs both).
const python = "/usr/bin/python3"

// TestPythonReceiver: a receiver written apart from sigil's code
// (testenv/ssf-receiver.py: Python's standard library and PyJWT) discovers
// the transmitter, creates a poll stream, and polls, verifies and
// acknowledges the CAEP events of a token and a certificate revocation
// and a verification event.
func TestPythonReceiver(t *testing.T) {
	t.Parallel()
	if _, err := exec.Command(python, "-c", "import jwt").CombinedOutput(); err != nil {
		t.Fatalf("%s with PyJWT is needed: apt-get install python3 python3-jwt (make deps): %v", python, err)
	}
	f := newFixture(t)
	srv := httptest.NewUnstartedServer(nil)
	cfg := f.cfg
	cfg.Issuer = "https://" + srv.Listener.Addr().String() // the receiver reaches the transmitter at its issuer
	tx, _ := f.start(t, cfg)
	mux := http.NewServeMux()
	tx.Routes(mux, nil)
	mux.HandleFunc("GET /jwks.json", func(w http.ResponseWriter, _ *http.Request) {
		jwks, _ := f.env.Keys.JWKS()
		w.Write(jwks)
	})
	srv.Config.Handler, srv.TLS = mux, f.env.ServerTLS(t)
	srv.StartTLS()
	t.Cleanup(srv.Close)

	dir := t.TempDir()
	write(t, filepath.Join(dir, "ca.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: f.env.CA.Root().Raw}))
	write(t, filepath.Join(dir, "token"), []byte(f.token(t, f.siem, audience)))
	cmd := exec.CommandContext(t.Context(), python, receiverScript(), "--issuer", cfg.Issuer, "--ca", filepath.Join(dir, "ca.pem"),
		"--token-file", filepath.Join(dir, "token"), "--aud", f.siem.ID, "--events", "3", "--timeout", "30")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(out)
	if !lines.Scan() || !strings.HasPrefix(lines.Text(), "READY ") {
		cmd.Wait()
		t.Fatalf("receiver did not start: %q\n%s", lines.Text(), stderr.String())
	}
	stream := strings.TrimPrefix(lines.Text(), "READY ")
	jti := f.revokeToken(t, f.other, "revoked by its holder") // one event
	victim := f.env.Workload(t, "victim")
	f.env.RevokeCertificate(t, victim)                   // one: no token is bound to it
	f.revokeToken(t, f.other, "revoked by its audience") // and a third
	var got []map[string]any
	for lines.Scan() && lines.Text() != "DONE" {
		var ev map[string]any
		if err := json.Unmarshal(lines.Bytes(), &ev); err != nil {
			t.Fatalf("receiver printed %q", lines.Text())
		}
		got = append(got, ev)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("receiver: %v\n%s", err, stderr.String())
	}
	printed, _ := json.Marshal(got)
	for _, want := range []string{
		`"type":"` + ssf.EventVerification + `"`,
		`"sub_id":{"format":"jwt_id","iss":"` + cfg.Issuer + `","jti":"` + jti + `"}`,
		`"type":"` + ssf.EventSessionRevoked + `"`,
		`"type":"` + ssf.EventCredentialChange + `"`,
		`"x509_serial":"` + serial(victim) + `"`,
	} {
		if !strings.Contains(string(printed), want) {
			t.Errorf("the receiver printed no %s:\n%s", want, printed)
		}
	}
	s, err := f.env.Store.Stream(t.Context(), stream)
	head, _ := f.env.Store.LatestRevocationSeq(t.Context())
	if err != nil || s.Cursor != head || s.Acked != nil || s.VerificationDone != s.VerificationID {
		t.Errorf("stream after the receiver acknowledged everything: %+v, %v; want the cursor at %d", s, err, head)
	}
}

func receiverScript() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "testenv", "ssf-receiver.py")
}

func write(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}
