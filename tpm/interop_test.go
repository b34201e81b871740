package tpm_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/testenv"
	"github.com/sigil-dev/sigil/tpm"
)

// requireTPM2OpenSSL fails the test without openssl and its tpm2 provider.
func requireTPM2OpenSSL(t *testing.T) {
	t.Helper()
	out, err := exec.Command("openssl", "version", "-m").Output()
	if err != nil {
		t.Fatalf("openssl: %v: %s", err, testenv.InstallSWTPM)
	}
	m := regexp.MustCompile(`MODULESDIR: "([^"]+)"`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("openssl version -m: no MODULESDIR in %q", out)
	}
	if _, err := os.Stat(filepath.Join(string(m[1]), "tpm2.so")); err != nil {
		t.Fatalf("openssl tpm2 provider: %v: %s", err, testenv.InstallSWTPM)
	}
}

func TestOpenSSLSignsWithTSS2Key(t *testing.T) {
	t.Parallel()
	requireTPM2OpenSSL(t)
	sw := sharedTPM(t)
	tt, err := tpm.Open(testCtx(t), sw.Addr)
	if err != nil {
		t.Fatal(err)
	}
	key, err := newAK(t, tt).NewKey(testCtx(t), nonce(t))
	if err != nil {
		t.Fatal(err)
	}
	pemKey, err := key.TSS2PEM()
	if err != nil {
		t.Fatalf("TSS2PEM: %v", err)
	}
	if !strings.HasPrefix(string(pemKey), "-----BEGIN TSS2 PRIVATE KEY-----") {
		t.Fatalf("TSS2PEM: %.40q", pemKey)
	}
	pub := key.Public().(*ecdsa.PublicKey)
	if err := tt.Close(); err != nil { // swtpm serves one connection at a time
		t.Fatal(err)
	}

	dir := t.TempDir()
	digest := sha256.Sum256([]byte("signed by openssl through the tpm2 provider"))
	keyPath, inPath, sigPath := filepath.Join(dir, "key.pem"), filepath.Join(dir, "digest"), filepath.Join(dir, "sig")
	for path, data := range map[string][]byte{keyPath: pemKey, inPath: digest[:]} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.CommandContext(testCtx(t), "openssl", "pkeyutl", "-provider", "tpm2", "-provider", "default",
		"-sign", "-inkey", keyPath, "-in", inPath, "-out", sigPath)
	cmd.Env = append(os.Environ(), "TPM2OPENSSL_TCTI="+sw.TCTI())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("openssl pkeyutl -sign: %v\n%s", err, out)
	}
	sig, err := os.ReadFile(sigPath)
	if err != nil {
		t.Fatal(err)
	}
	if !ecdsa.VerifyASN1(pub, digest[:], sig) {
		t.Fatal("openssl's signature does not verify with the key's public key")
	}
	other := sha256.Sum256([]byte("something else"))
	if ecdsa.VerifyASN1(pub, other[:], sig) {
		t.Fatal("signature verifies for another digest")
	}
}

func TestTLSClientCertificate(t *testing.T) {
	t.Parallel()
	tt := open(t, sharedTPM(t))
	key := newKey(t, newAK(t, tt), nonce(t))
	ca := newTestCA(t)
	serverKey := mustKey(t)
	server := tls.Certificate{Certificate: [][]byte{ca.issue(t, serverKey.Public(), "server", x509.ExtKeyUsageServerAuth)}, PrivateKey: serverKey}
	tests := []struct {
		name    string
		certKey crypto.PublicKey // the key the client certificate names
		wantErr string           // in the server's handshake error
	}{
		{"tpm key", key.Public(), ""},
		{"certificate for another key", mustKey(t).Public(), "invalid signature"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			client := tls.Certificate{Certificate: [][]byte{ca.issue(t, tc.certKey, "workload", x509.ExtKeyUsageClientAuth)}, PrivateKey: key}
			serverErr, clientErr := handshake(t, ca, server, client)
			if tc.wantErr == "" {
				if serverErr != nil || clientErr != nil {
					t.Fatalf("handshake: server %v, client %v", serverErr, clientErr)
				}
				return
			}
			if serverErr == nil || !strings.Contains(serverErr.Error(), tc.wantErr) {
				t.Errorf("server: %v, want %q", serverErr, tc.wantErr)
			}
			if clientErr == nil {
				t.Error("client: no error")
			}
		})
	}
}

// handshake runs a TLS 1.3 server that requires a client certificate from ca
// and a client presenting client, and returns their errors.
func handshake(t *testing.T, ca *testCA, server, client tls.Certificate) (serverErr, clientErr error) {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{server},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    ca.pool,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() { done <- serveOnce(ln) }()
	conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{
		MinVersion:   tls.VersionTLS13,
		RootCAs:      ca.pool,
		ServerName:   "server",
		Certificates: []tls.Certificate{client},
	})
	if err == nil {
		// In TLS 1.3 the server checks the client's certificate after the
		// client's handshake ends: its verdict arrives with the first read.
		_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
		_, err = conn.Read(make([]byte, 2))
		conn.Close()
	}
	return <-done, err
}

// serveOnce accepts one connection, handshakes and answers "ok".
func serveOnce(ln net.Listener) error {
	c, err := ln.Accept()
	if err != nil {
		return err
	}
	defer c.Close()
	conn := c.(*tls.Conn)
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	if err := conn.Handshake(); err != nil {
		return err
	}
	if n := len(conn.ConnectionState().PeerCertificates); n != 1 {
		return errors.New("no client certificate")
	}
	_, err = conn.Write([]byte("ok"))
	return err
}

type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key := mustKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

func (ca *testCA) issue(t *testing.T, pub crypto.PublicKey, name string, eku x509.ExtKeyUsage) []byte {
	t.Helper()
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{eku},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func mustKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
