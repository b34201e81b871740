package client

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"go.step.sm/crypto/keyutil"

	"github.com/sigil-dev/sigil/api"
	"github.com/sigil-dev/sigil/tpm"
)

// Files in a state directory besides the TPM's (tpm.AKFile, tpm.KeyFile,
// tpm.KeyPEMFile).
const (
	StateFile = "state.json"
	CertFile  = "cert.pem" // leaf, then the issuing CA
)

// State is what an enrolled workload keeps.
type State struct {
	Server         string    `json:"server"`
	TPM            string    `json:"tpm"`
	EventLog       string    `json:"event_log,omitempty"`
	SPIFFEID       string    `json:"spiffe_id"`
	ExpiresAt      time.Time `json:"expires_at"`
	EvidenceDigest string    `json:"evidence_digest"`
	PolicyVersion  string    `json:"policy_version"`
	// Chain is the leaf then the issuing CA.
	Chain []*x509.Certificate `json:"-"`
}

func save(c EnrollConfig, ak *tpm.AK, key *tpm.Key, cert *api.Certificate) (*State, error) {
	st := &State{
		Server: c.Server, TPM: c.TPM, EventLog: c.EventLog, SPIFFEID: cert.SPIFFEID,
		ExpiresAt: cert.ExpiresAt, EvidenceDigest: cert.EvidenceDigest, PolicyVersion: cert.PolicyVersion,
	}
	var chainPEM []byte
	for _, der := range cert.Chain {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("client: issued certificate: %w", err)
		}
		st.Chain = append(st.Chain, c)
		chainPEM = append(chainPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	if len(st.Chain) == 0 || !keyutil.Equal(key.Public(), st.Chain[0].PublicKey) {
		return nil, fmt.Errorf("client: the issued certificate is not for the TPM key")
	}
	if err := tpm.Save(c.StateDir, ak, key); err != nil {
		return nil, err
	}
	meta, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := writeFile(filepath.Join(c.StateDir, CertFile), chainPEM); err != nil {
		return nil, err
	}
	return st, writeFile(filepath.Join(c.StateDir, StateFile), append(meta, '\n'))
}

// writeFile replaces path atomically with mode 0600.
func writeFile(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("client: write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("client: write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("client: %w", err)
	}
	return nil
}
