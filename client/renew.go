package client

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/sigil-dev/sigil/api"
	"github.com/sigil-dev/sigil/tpm"
)

// Renew renews the certificate in stateDir: over mTLS with the current
// certificate and TPM key, it quotes the PCRs over the server's nonce with
// the AK pinned at enrollment and sends a CSR by the same key.
func Renew(ctx context.Context, stateDir string) (*State, error) {
	st, err := LoadState(stateDir)
	if err != nil {
		return nil, err
	}
	var opts []tpm.Option
	if st.EventLog != "" {
		opts = append(opts, tpm.WithEventLog(st.EventLog))
	}
	t, err := tpm.Open(ctx, st.TPM, opts...)
	if err != nil {
		return nil, err
	}
	defer t.Close()
	ak, key, err := t.Load(ctx, stateDir)
	if err != nil {
		return nil, err
	}
	if key == nil {
		return nil, fmt.Errorf("client: %s holds no TPM key: enroll first", stateDir)
	}
	defer key.Close()
	hc := newHTTPClient(st.roots, &tls.Certificate{Certificate: st.chainDER(), PrivateKey: key, Leaf: st.Chain[0]})
	base := strings.TrimSuffix(st.Server, "/")
	var ch api.Challenge
	if err := post(ctx, hc, base+api.PathRenewChallenge, struct{}{}, &ch); err != nil {
		return nil, fmt.Errorf("renew %s: %w", st.SPIFFEID, err)
	}
	platform, err := quote(ctx, ak, ch.Nonce)
	if err != nil {
		return nil, err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: st.Chain[0].URIs}, key)
	if err != nil {
		return nil, fmt.Errorf("client: sign CSR with the TPM key: %w", err)
	}
	var cert api.Certificate
	if err := post(ctx, hc, base+api.PathRenew, api.RenewRequest{ChallengeID: ch.ID, Platform: platform, CSR: csr}, &cert); err != nil {
		return nil, fmt.Errorf("renew %s: %w", st.SPIFFEID, err)
	}
	return st.update(stateDir, key.Public(), &cert)
}

// LoadState reads the state Enroll or Renew saved in dir.
func LoadState(dir string) (*State, error) {
	st := &State{}
	if err := readJSON(filepath.Join(dir, StateFile), st); err != nil {
		return nil, err
	}
	chainPEM, err := os.ReadFile(filepath.Join(dir, CertFile))
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	if st.Chain, err = parseChain(chainPEM); err != nil {
		return nil, err
	}
	bundle, err := os.ReadFile(filepath.Join(dir, BundleFile))
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	if st.roots, err = pool(bundle); err != nil {
		return nil, err
	}
	return st, nil
}

func (st *State) chainDER() [][]byte {
	out := make([][]byte, len(st.Chain))
	for i, c := range st.Chain {
		out[i] = c.Raw
	}
	return out
}
