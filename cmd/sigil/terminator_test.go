package main_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/sigil-dev/sigil/client"
	"github.com/sigil-dev/sigil/internal/agent"
	"github.com/sigil-dev/sigil/testenv"
)

// TestTerminatorHAProxy runs examples/terminator as a team that keeps its
// own TLS terminator would: HAProxy serves mTLS with the files sigil agent
// wrote — the TSS2 key through tpm2-openssl and tpm2-abrmd in front of
// swtpm — and passes the client certificate to the Python resource server
// (python3-jwt), which checks iss, aud, typ, the JWKS signature and
// cnf.x5t#S256 against that certificate.
func TestTerminatorHAProxy(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("haproxy"); err != nil {
		t.Fatal("haproxy not found: apt-get install haproxy (or run make deps)")
	}
	s := startStack(t, "2")
	id := func(n string) string { return "spiffe://sigil.test/workload/" + n }
	for i, n := range []string{"inventory", "reports"} {
		addr, log := s.tpm(i)
		if out, code := s.run("sigil", "enroll", "--server-auth", "--tpm", addr, "--event-log", log,
			"--identity", id(n), "--state", filepath.Join(s.dir, n)); code != 0 {
			t.Fatalf("enroll %s: %s", n, out)
		}
	}
	// inventory's own token: bound to inventory's certificate, so useless
	// to reports, who steals it.
	stolen, code := s.runBinary("sigil", "token", "--state", filepath.Join(s.dir, "inventory"), "--audience", id("inventory"))
	if code != 0 {
		t.Fatalf("sigil token: %s", stolen)
	}
	stolen = strings.TrimSpace(stolen)

	// The agent writes the files and checks OpenSSL, then gives the TPM
	// to tpm2-abrmd (swtpm serves one connection).
	a := s.startAgent(t, "inventory")
	a.cmd.Process.Signal(syscall.SIGTERM)
	if err := <-a.done; err != nil {
		t.Fatalf("agent: %v", err)
	}
	a.done <- nil
	tcti := strings.TrimPrefix(strings.Fields(s.env["SIGIL_TPMS"])[0], "swtpm:")
	host, port, _ := net.SplitHostPort(tcti)
	rmEnv := testenv.ResourceManager(t, "swtpm:host="+host+",port="+port)

	rs := s.startResourceServer(t, id("inventory"))
	front := s.startHAProxy(t, a.out, rs, rmEnv)

	rc, err := client.New(t.Context(), client.Config{StateDir: filepath.Join(s.dir, "reports")})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	inventory := spiffeid.RequireFromString(id("inventory"))
	// One connection for all: each HAProxy handshake costs ~900 TPM commands.
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: rc.ClientTLSConfig(inventory)}, Timeout: time.Minute}
	call := func(token string, hdr ...string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, "https://"+front+"/items", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("call through HAProxy: %v", err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	tok := func(aud string) string {
		tk, err := rc.CachedToken(t.Context(), aud, nil, "")
		if err != nil {
			t.Fatal(err)
		}
		return tk.AccessToken
	}
	own := tok(id("inventory"))
	if status, body := call(own); status != http.StatusOK || !strings.Contains(body, `"sub": "`+id("reports")+`"`) {
		t.Fatalf("reports with its own token: %d %s", status, body)
	}
	inventoryCert := readPEM(t, filepath.Join(a.out, agent.ChainFile))[0]
	sig := own[strings.LastIndexByte(own, '.')+1:]
	other := "A" // another base64url character: the signature's first bits change, its encoding stays valid
	if sig[0] == 'A' {
		other = "B"
	}
	flipped := own[:len(own)-len(sig)] + other + sig[1:]
	tests := []struct {
		name, token, want string
		hdr               []string
	}{
		{"stolen token", stolen, "token not bound to the client certificate", nil},
		{"stolen token with its certificate in a forged header", stolen, "token not bound to the client certificate",
			[]string{"X-Client-Cert", base64.StdEncoding.EncodeToString(inventoryCert.Raw)}},
		{"another audience's token", tok(id("payments")), "InvalidAudienceError", nil},
		{"a user's IdP token", s.userToken(t, "inventory", "read"), "unknown key", nil},
		{"signature changed", flipped, "InvalidSignatureError", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := call(tt.token, tt.hdr...)
			var e struct {
				Error string `json:"error"`
				Desc  string `json:"error_description"`
			}
			json.Unmarshal([]byte(body), &e)
			if status != http.StatusUnauthorized || e.Error != "invalid_token" || e.Desc != tt.want {
				t.Errorf("%d %s, want 401 invalid_token %q", status, body, tt.want)
			}
		})
	}

	t.Run("no client certificate", func(t *testing.T) {
		roots := x509.NewCertPool()
		roots.AppendCertsFromPEM(readFileT(t, s.env["SIGIL_CA_BUNDLE"]))
		anon := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "127.0.0.1",
			InsecureSkipVerify: true}}, Timeout: time.Minute} // the server's name is its SPIFFE ID; refused before that matters
		req, _ := http.NewRequest(http.MethodGet, "https://"+front+"/items", nil)
		req.Header.Set("Authorization", "Bearer "+own)
		resp, err := anon.Do(req)
		if err == nil {
			resp.Body.Close()
			t.Fatalf("answered %s without a client certificate", resp.Status)
		}
	})

	// curl, as OpenSSL software, with the agent's openssl.cnf and the TSS2
	// key through the resource manager: inventory's own token from
	// inventory's certificate passes the cnf check.
	t.Run("curl with the agent's OpenSSL configuration", func(t *testing.T) {
		cmd := exec.Command("curl", "--silent", "--show-error", "--max-time", "60",
			"--insecure", // the server's name is a SPIFFE ID, which curl does not check; this is about the client side
			"--cert", filepath.Join(a.out, agent.ChainFile), "--key", filepath.Join(a.out, agent.KeyFile),
			"-H", "Authorization: Bearer "+stolen, "https://"+front+"/items")
		cmd.Env = append(append(os.Environ(), rmEnv...), "OPENSSL_CONF="+filepath.Join(a.out, agent.OpenSSLConfigFile))
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), `"sub": "`+id("inventory")+`"`) {
			t.Errorf("curl: %v: %s", err, out)
		}
	})

	t.Run("the checks, one by one", func(t *testing.T) {
		cmd := exec.Command(debianPython, "-m", "unittest", "-v", "test_resource_server")
		cmd.Dir = filepath.Join(s.root, "examples", "terminator")
		cmd.Env = append(os.Environ(), "PYTHONDONTWRITEBYTECODE=1")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("python3 -m unittest: %v\n%s", err, out)
		}
	})
}

// startResourceServer runs examples/terminator/resource_server.py for
// audience and returns its address.
func (s *stack) startResourceServer(t *testing.T, audience string) string {
	t.Helper()
	var md struct {
		Issuer string `json:"issuer"`
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(readFileT(t, s.env["SIGIL_CA_BUNDLE"]))
	sigild := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}, Timeout: 10 * time.Second}
	resp, err := sigild.Get(s.env["SIGIL_SERVER"] + "/.well-known/oauth-authorization-server")
	if err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(resp.Body).Decode(&md)
	resp.Body.Close()
	ready := filepath.Join(s.dir, "rs.addr")
	cmd := exec.Command(debianPython, filepath.Join(s.root, "examples", "terminator", "resource_server.py"),
		"--listen", "127.0.0.1:0", "--issuer", md.Issuer, "--audience", audience,
		"--jwks", s.env["SIGIL_SERVER"]+"/jwks.json", "--ca-bundle", s.env["SIGIL_CA_BUNDLE"], "--ready", ready)
	return startLogged(t, cmd, filepath.Join(s.dir, "rs.log"), ready)
}

// startHAProxy runs examples/terminator/haproxy.cfg with the agent's
// output directory and returns its address.
func (s *stack) startHAProxy(t *testing.T, out, upstream string, env []string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cfg := filepath.Join(s.root, "examples", "terminator", "haproxy.cfg")
	cmd := exec.Command("haproxy", "-db", "-f", cfg)
	cmd.Env = append(append(os.Environ(), env...), "SIGIL_OUT="+out, "RS_BIND="+addr, "RS_UPSTREAM="+upstream)
	logf, err := os.Create(filepath.Join(s.dir, "haproxy.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait(); logf.Close() })
	testenv.WaitForNil(t, 30*time.Second, "HAProxy to listen", func() error {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			log, _ := os.ReadFile(filepath.Join(s.dir, "haproxy.log"))
			return fmt.Errorf("%w\n%s", err, log)
		}
		return c.Close()
	})
	return addr
}

// startLogged starts cmd logging to logPath, stopped by the test's
// cleanup, and returns what it writes to ready.
func startLogged(t *testing.T, cmd *exec.Cmd, logPath, ready string) string {
	t.Helper()
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: %v", cmd.Path, err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait(); logf.Close() })
	var addr []byte
	testenv.WaitForNil(t, 15*time.Second, filepath.Base(cmd.Args[1])+" to listen", func() error {
		var err error
		if addr, err = os.ReadFile(ready); err != nil {
			log, _ := os.ReadFile(logPath)
			return fmt.Errorf("%w\n%s", err, log)
		}
		return nil
	})
	return strings.TrimSpace(string(addr))
}
