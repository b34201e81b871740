package agent

import (
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"

	"github.com/sigil-dev/sigil/client"
	"github.com/sigil-dev/sigil/internal/atomicfile"
	"github.com/sigil-dev/sigil/tpm"
)

// Files WriteFiles writes in the output directory.
const (
	// ChainFile is the X.509-SVID, then the issuing CA: the certificate a
	// TLS terminator presents.
	ChainFile = "svid.pem"
	// KeyFile is the TPM key as a "TSS2 PRIVATE KEY" PEM, for OpenSSL's
	// tpm2 provider; named as HAProxy looks for the key of ChainFile. It
	// is a blob only this TPM can load, not the private key.
	KeyFile = "svid.pem.key"
	// BundleFile is the trust bundle: the CA certificates that peers'
	// certificates must chain to.
	BundleFile = "bundle.pem"
)

// WriteFiles writes the workload's current certificate chain, trust
// bundle and TSS2 key from stateDir into dir, each replaced atomically
// (a reader sees the old file or the new one): the key (mode 0600) and the
// bundle first, the chain last.
func WriteFiles(dir, stateDir string, st *client.State) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("agent: output directory: %w", err)
	}
	key, err := os.ReadFile(filepath.Join(stateDir, tpm.KeyPEMFile))
	if err != nil {
		return fmt.Errorf("agent: TSS2 key: %w", err)
	}
	bundle, err := os.ReadFile(filepath.Join(stateDir, client.BundleFile))
	if err != nil {
		return fmt.Errorf("agent: trust bundle: %w", err)
	}
	var chain []byte
	for _, c := range st.Chain {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	for _, f := range []struct {
		name string
		data []byte
		mode os.FileMode
	}{{KeyFile, key, 0o600}, {BundleFile, bundle, 0o644}, {ChainFile, chain, 0o644}} {
		if err := atomicfile.WriteMode(filepath.Join(dir, f.name), f.data, f.mode); err != nil {
			return fmt.Errorf("agent: write %s: %w", f.name, err)
		}
	}
	return nil
}
