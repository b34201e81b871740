package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// EKCA is a private certificate authority that swtpm_localca uses to issue EK
// and platform certificates: one self-signed ECDSA P-256 certificate that
// signs the EK certificates directly.
type EKCA struct {
	// Dir holds the CA key, certificate and the swtpm_setup and swtpm_localca
	// configuration that point at them.
	Dir string
	// Cert is the CA certificate; CertPath is its PEM file (Dir/ek-ca.pem).
	Cert     *x509.Certificate
	CertPath string
}

// NewEKCA creates a CA in dir, or loads the one already there.
func NewEKCA(dir string) (*EKCA, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("swtpm: ek ca: %w", err)
	}
	ca := &EKCA{Dir: dir, CertPath: filepath.Join(dir, "ek-ca.pem")}
	if _, err := os.Stat(ca.CertPath); errors.Is(err, os.ErrNotExist) {
		if err := ca.create(); err != nil {
			return nil, fmt.Errorf("swtpm: create ek ca in %s: %w", dir, err)
		}
	}
	pemBytes, err := os.ReadFile(ca.CertPath)
	if err != nil {
		return nil, fmt.Errorf("swtpm: ek ca: %w", err)
	}
	if ca.Cert, err = parseCertPEM(pemBytes); err != nil {
		return nil, fmt.Errorf("swtpm: ek ca %s: %w", ca.CertPath, err)
	}
	return ca, nil
}

func parseCertPEM(b []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM certificate")
	}
	return x509.ParseCertificate(block.Bytes)
}

// Pool returns a pool holding only the CA certificate.
func (ca *EKCA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

func (ca *EKCA) setupConf() string { return filepath.Join(ca.Dir, "swtpm_setup.conf") }

func (ca *EKCA) writeCert(path string) error {
	b := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw})
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("swtpm: %w", err)
	}
	return nil
}

func (ca *EKCA) create() error {
	if err := os.MkdirAll(ca.Dir, 0o700); err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	der, err := selfSign(key)
	if err != nil {
		return err
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	localca, err := exec.LookPath("swtpm_localca")
	if err != nil {
		return fmt.Errorf("%w: %s", err, InstallSWTPM)
	}
	files := []struct {
		name string
		data string
		mode os.FileMode
	}{
		{"signkey.pem", string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})), 0o600},
		{"issuercert.pem", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})), 0o644},
		{"swtpm-localca.conf", fmt.Sprintf("statedir = %[1]s\nsigningkey = %[1]s/signkey.pem\n"+
			"issuercert = %[1]s/issuercert.pem\ncertserial = %[1]s/certserial\n", ca.Dir), 0o644},
		{"swtpm-localca.options", "--platform-manufacturer sigil\n--platform-version 2.0\n--platform-model swtpm\n", 0o644},
		{"swtpm_setup.conf", fmt.Sprintf("create_certs_tool = %[2]s\ncreate_certs_tool_config = %[1]s/swtpm-localca.conf\n"+
			"create_certs_tool_options = %[1]s/swtpm-localca.options\nactive_pcr_banks = sha1,sha256\n", ca.Dir, localca), 0o644},
		// Written last: its presence marks a complete CA.
		{"ek-ca.pem", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})), 0o644},
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(ca.Dir, f.name), []byte(f.data), f.mode); err != nil {
			return err
		}
	}
	return nil
}

func selfSign(key *ecdsa.PrivateKey) ([]byte, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	id := make([]byte, 4)
	if _, err := rand.Read(id); err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"sigil test"}, CommonName: "sigil test EK CA " + hex.EncodeToString(id)},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	return x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
}
