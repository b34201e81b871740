package agent

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/sigil-dev/sigil/internal/atomicfile"
)

// Files WriteOpenSSL writes in the output directory.
const (
	// OpenSSLConfigFile makes OpenSSL 3 software use KeyFile through
	// tpm2-openssl: pass it with OPENSSL_CONF.
	OpenSSLConfigFile = "openssl.cnf"
	// OpenSSLEnvFile holds OPENSSL_CONF and TPM2OPENSSL_TCTI as
	// NAME=value lines (a systemd EnvironmentFile, or `set -a; .` in sh).
	OpenSSLEnvFile = "openssl.env"
)

// openSSLConfig is the configuration that works with Debian 12's OpenSSL
// 3.0 and tpm2-openssl (FIELD-NOTES): without default_properties OpenSSL
// finds no private key in the TSS2 PEM; without the random generator
// pinned to the default provider every random byte goes to the TPM and
// curl fails with "Insufficient randomness".
const openSSLConfig = `# Written by sigil agent: OpenSSL 3 with the workload's TPM key (svid.pem.key)
# through tpm2-openssl. Use: OPENSSL_CONF=%[1]s with TPM2OPENSSL_TCTI set
# (see openssl.env beside this file).
openssl_conf = openssl_init

[openssl_init]
providers = provider_sect
alg_section = evp_properties
random = random_sect

# Prefer tpm2 (it loads TSS2 PRIVATE KEY files); fall back to default.
[evp_properties]
default_properties = ?provider=tpm2

# Randomness from the default provider, never from the TPM.
[random_sect]
random = CTR-DRBG
cipher = AES-256-CTR
properties = provider=default
seed_properties = provider=default

[provider_sect]
default = default_sect
tpm2 = tpm2_sect

[default_sect]
activate = 1

[tpm2_sect]
activate = 1
`

// TCTI is how TSS2 software (tpm2-openssl, tpm2-tools) reaches the TPM.
type TCTI struct {
	// Spec is the TCTI string: TPM2OPENSSL_TCTI's value.
	Spec string
	// ResourceManager is false when nothing between the software and the
	// TPM swaps objects in and out: OpenSSL then runs out of TPM object
	// slots ("cannot duplicate context", TPM_RC_OBJECT_MEMORY).
	ResourceManager bool
}

// TCTIFor returns the TCTI for the TPM a workload was enrolled with
// (client.State.TPM), or for override when set (e.g. "tabrmd:bus_type=
// session,bus_name=…", for tpm2-abrmd in front of swtpm).
func TCTIFor(tpmPath, override string) (TCTI, error) {
	spec := override
	if spec == "" {
		var err error
		if spec, err = tctiOf(tpmPath); err != nil {
			return TCTI{}, err
		}
	}
	rm := strings.HasPrefix(spec, "tabrmd") || strings.HasPrefix(spec, "device:/dev/tpmrm")
	return TCTI{Spec: spec, ResourceManager: rm}, nil
}

func tctiOf(tpmPath string) (string, error) {
	if hostPort, ok := strings.CutPrefix(tpmPath, "swtpm:"); ok {
		host, port, err := net.SplitHostPort(hostPort)
		if err != nil {
			return "", fmt.Errorf("agent: TPM %q: %w", tpmPath, err)
		}
		return "swtpm:host=" + host + ",port=" + port, nil
	}
	if strings.HasPrefix(tpmPath, "/dev/") {
		return "device:" + tpmPath, nil
	}
	return "", fmt.Errorf("agent: TPM %q: no TCTI for it; give one with --tcti", tpmPath)
}

// NoResourceManager is what the agent tells the operator when t has no
// resource manager.
func (t TCTI) NoResourceManager() string {
	if strings.HasPrefix(t.Spec, "swtpm") {
		return "swtpm has no resource manager: OpenSSL software (nginx, HAProxy, curl) with the TSS2 key needs tpm2-abrmd in front of it " +
			"(tpm2-abrmd --session --tcti=" + t.Spec + "), then --tcti tabrmd:bus_type=session,bus_name=NAME; without it OpenSSL fails with \"cannot duplicate context\""
	}
	return "the TPM " + t.Spec + " has no resource manager: OpenSSL software with the TSS2 key needs /dev/tpmrm0 (the kernel's) or tpm2-abrmd; " +
		"without it OpenSSL fails with \"cannot duplicate context\""
}

// WriteOpenSSL writes OpenSSLConfigFile and OpenSSLEnvFile into dir.
func WriteOpenSSL(dir string, t TCTI) error {
	conf, err := filepath.Abs(filepath.Join(dir, OpenSSLConfigFile))
	if err != nil {
		return err
	}
	if err := atomicfile.WriteMode(conf, fmt.Appendf(nil, openSSLConfig, conf), 0o644); err != nil {
		return fmt.Errorf("agent: write %s: %w", OpenSSLConfigFile, err)
	}
	env := fmt.Sprintf("OPENSSL_CONF=%s\nTPM2OPENSSL_TCTI=%s\n", conf, t.Spec)
	if err := atomicfile.WriteMode(filepath.Join(dir, OpenSSLEnvFile), []byte(env), 0o644); err != nil {
		return fmt.Errorf("agent: write %s: %w", OpenSSLEnvFile, err)
	}
	return nil
}

// opensslTimeout bounds the check; a TPM without a resource manager or a
// busy one can hang OpenSSL.
const opensslTimeout = 30 * time.Second

// ErrOpenSSL means OpenSSL with the written configuration cannot use the
// TPM key: software that reads the output files with OpenSSL will fail the
// same way. The error says what OpenSSL answered.
var ErrOpenSSL = errors.New("openssl cannot sign with the TPM key")

// CheckOpenSSL has the openssl command (bin), with the configuration in
// dir and t, sign a fresh digest with the TSS2 key in dir, and checks the
// signature with pub, the certificate's key. It needs the TPM: run it
// while nothing else holds a TPM without resource manager.
func CheckOpenSSL(ctx context.Context, bin, dir string, t TCTI, pub crypto.PublicKey) error {
	ctx, cancel := context.WithTimeout(ctx, opensslTimeout)
	defer cancel()
	tmp, err := os.MkdirTemp("", "sigil-openssl-check-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	nonce := make([]byte, 32)
	rand.Read(nonce)
	digest := sha256.Sum256(nonce)
	in, out := filepath.Join(tmp, "digest"), filepath.Join(tmp, "sig")
	if err := os.WriteFile(in, digest[:], 0o600); err != nil {
		return err
	}
	conf, err := filepath.Abs(filepath.Join(dir, OpenSSLConfigFile))
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, bin, "pkeyutl", "-sign", "-inkey", filepath.Join(dir, KeyFile), "-in", in, "-out", out)
	cmd.Env = append(os.Environ(), "OPENSSL_CONF="+conf, "TPM2OPENSSL_TCTI="+t.Spec)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("agent: %w: %s pkeyutl -sign: %v: %s", ErrOpenSSL, bin, err, lastLines(stderr.String(), 3))
	}
	sig, err := os.ReadFile(out)
	if err != nil {
		return fmt.Errorf("agent: %w: %v", ErrOpenSSL, err)
	}
	if !verifySig(pub, digest[:], sig) {
		return fmt.Errorf("agent: %w: the signature does not verify with the certificate's key", ErrOpenSSL)
	}
	return nil
}

func verifySig(pub crypto.PublicKey, digest, sig []byte) bool {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		return ecdsa.VerifyASN1(k, digest, sig)
	case *rsa.PublicKey:
		return rsa.VerifyPKCS1v15(k, crypto.SHA256, digest, sig) == nil
	}
	return false
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
