package client

import (
	"crypto"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"go.step.sm/crypto/keyutil"
	"go.step.sm/crypto/pemutil"

	"github.com/sigil-dev/sigil/api"
	"github.com/sigil-dev/sigil/internal/atomicfile"
	"github.com/sigil-dev/sigil/tpm"
)

// Files in a state directory besides the TPM's (tpm.AKFile, tpm.KeyFile,
// tpm.KeyPEMFile).
const (
	StateFile  = "state.json"
	CertFile   = "cert.pem"   // leaf, then the issuing CA
	BundleFile = "bundle.pem" // the trust bundle the server is checked against
)

// maxStateFile bounds what LoadState reads from a state file.
const maxStateFile = 1 << 20

// State is what an enrolled workload keeps.
type State struct {
	Server   string `json:"server"`
	TPM      string `json:"tpm"`
	EventLog string `json:"event_log,omitempty"`
	// HostState is the host state directory of this TPM holding the AK the
	// workload quotes with; empty in state written before host state
	// existed, whose AK is in the state directory itself.
	HostState      string    `json:"host_state,omitempty"`
	SPIFFEID       string    `json:"spiffe_id"`
	ExpiresAt      time.Time `json:"expires_at"`
	EvidenceDigest string    `json:"evidence_digest"`
	PolicyVersion  string    `json:"policy_version"`
	// Chain is the leaf then the issuing CA.
	Chain []*x509.Certificate `json:"-"`

	roots  *x509.CertPool
	bundle []*x509.Certificate // the trust bundle's certificates
}

// save writes a first enrollment: key blobs, bundle, certificate, state. The
// AK stays in hostDir.
func save(c EnrollConfig, hostDir string, key *tpm.Key, cert *api.Certificate) (*State, error) {
	st := &State{Server: c.Server, TPM: c.TPM, EventLog: c.EventLog, HostState: hostDir}
	if err := tpm.Save(c.StateDir, nil, key); err != nil {
		return nil, err
	}
	if err := writeFile(filepath.Join(c.StateDir, BundleFile), c.CABundle); err != nil {
		return nil, err
	}
	return st.update(c.StateDir, key.Public(), cert)
}

// update records a newly issued certificate for key in dir.
func (st *State) update(dir string, key crypto.PublicKey, cert *api.Certificate) (*State, error) {
	var chainPEM []byte
	for _, der := range cert.Chain {
		chainPEM = append(chainPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	chain, err := parseChain(chainPEM)
	if err != nil {
		return nil, err
	}
	if !keyutil.Equal(key, chain[0].PublicKey) {
		return nil, errors.New("client: the issued certificate is not for the TPM key")
	}
	next := *st
	next.Chain, next.SPIFFEID, next.ExpiresAt = chain, cert.SPIFFEID, cert.ExpiresAt
	next.EvidenceDigest, next.PolicyVersion = cert.EvidenceDigest, cert.PolicyVersion
	meta, err := json.MarshalIndent(&next, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := writeFile(filepath.Join(dir, CertFile), chainPEM); err != nil {
		return nil, err
	}
	return &next, writeFile(filepath.Join(dir, StateFile), append(meta, '\n'))
}

func parseChain(data []byte) ([]*x509.Certificate, error) {
	chain, err := pemutil.ParseCertificateBundle(data)
	if err != nil {
		return nil, fmt.Errorf("client: certificate chain: %w", err)
	}
	return chain, nil
}

// pool parses a PEM trust bundle.
func pool(bundle []byte) (*x509.CertPool, error) {
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(bundle) {
		return nil, errors.New("client: the CA bundle holds no PEM certificate")
	}
	return p, nil
}

func readJSON(path string, v any) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	defer f.Close()
	dec := json.NewDecoder(io.LimitReader(f, maxStateFile))
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("client: %s: %w", path, err)
	}
	return nil
}

// writeFile replaces path atomically with mode 0600.
func writeFile(path string, data []byte) error {
	if err := atomicfile.Write(path, data); err != nil {
		return fmt.Errorf("client: write %s: %w", path, err)
	}
	return nil
}

// Bundle is the trust bundle saved at enrollment.
func (st *State) Bundle() []*x509.Certificate { return st.bundle }
