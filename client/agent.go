package client

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/sigil-dev/sigil/api"
)

// agentTimeout bounds one call to the host agent; an enrollment through it
// runs the whole protocol with sigild.
const agentTimeout = 2 * time.Minute

// OpenAgent opens identity through the host agent listening on socket
// (sigil agent --host): the agent enrolls it on first use, for this
// process as the kernel identifies it, keeps it renewed, and signs with its
// TPM key on the workload's behalf. The Workload works as one opened with
// Open. serverAuth asks, at first enrollment, for a certificate that also
// serves mTLS.
func OpenAgent(ctx context.Context, socket, identity string, serverAuth bool) (*Workload, error) {
	if socket == "" || identity == "" {
		return nil, errors.New("client: the agent's socket and the identity are required")
	}
	k := &agentKeeper{identity: identity, hc: agentHTTPClient(socket)}
	var svid api.HostSVID
	if err := k.call(ctx, api.PathHostSVID, api.HostSVIDRequest{Identity: identity, ServerAuth: serverAuth}, &svid); err != nil {
		return nil, fmt.Errorf("client: %s through the host agent: %w", identity, err)
	}
	st, err := agentState(&svid)
	if err != nil {
		return nil, err
	}
	k.key, k.keyPEM = &agentSigner{k: k, pub: st.Chain[0].PublicKey}, svid.KeyPEM
	return newWorkload(st, k), nil
}

// agentHTTPClient speaks HTTP to the agent's Unix socket.
func agentHTTPClient(socket string) *http.Client {
	var d net.Dialer
	return &http.Client{
		Timeout: agentTimeout,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return d.DialContext(ctx, "unix", socket)
			},
		},
	}
}

// agentKeeper is a workload whose key the host agent holds.
type agentKeeper struct {
	identity string
	hc       *http.Client
	key      *agentSigner
	keyPEM   string // the TSS2 PRIVATE KEY the agent gave
}

func (k *agentKeeper) signer() crypto.Signer { return k.key }

// KeyPEM is, for a workload opened through the host agent, its TPM key as
// the agent gave it: a TSS2 PRIVATE KEY PEM that works only with the
// host's TPM (OpenSSL's tpm2 provider); "" otherwise.
func (w *Workload) KeyPEM() string {
	if k, ok := w.k.(*agentKeeper); ok {
		return k.keyPEM
	}
	return ""
}
func (k *agentKeeper) close() error { k.hc.CloseIdleConnections(); return nil }

// renew has the agent renew id's certificate, or hand over the newer one
// it renewed meanwhile.
func (k *agentKeeper) renew(ctx context.Context, id *identity) (*State, error) {
	var svid api.HostSVID
	req := api.HostRenewRequest{Identity: k.identity, Serial: id.state.Chain[0].SerialNumber.Text(16)}
	if err := k.call(ctx, api.PathHostRenew, req, &svid); err != nil {
		return nil, fmt.Errorf("renew %s through the host agent: %w", k.identity, err)
	}
	return agentState(&svid)
}

// call posts in to the agent and decodes its answer into out; an error
// answer is a *ServerError, as sigild's are.
func (k *agentKeeper) call(ctx context.Context, path string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://sigil-agent"+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	data, err := roundTrip(k.hc, req, maxResponse)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("client: decode the agent's answer: %w", err)
	}
	return nil
}

// agentState is the in-memory state of an identity the agent answered.
func agentState(s *api.HostSVID) (*State, error) {
	if len(s.Chain) == 0 || len(s.Bundle) == 0 {
		return nil, errors.New("client: the agent answered no certificate or no bundle")
	}
	st := &State{Server: s.Server, SPIFFEID: s.SPIFFEID, ExpiresAt: s.ExpiresAt, EvidenceDigest: s.EvidenceDigest, PolicyVersion: s.PolicyVersion}
	for _, der := range s.Chain {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("client: the agent's certificate chain: %w", err)
		}
		st.Chain = append(st.Chain, c)
	}
	st.roots = x509.NewCertPool()
	for _, der := range s.Bundle {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("client: the agent's bundle: %w", err)
		}
		st.roots.AddCert(c)
		st.bundle = append(st.bundle, c)
	}
	return st, nil
}

// agentSigner signs with the TPM key through the host agent.
type agentSigner struct {
	k   *agentKeeper
	pub crypto.PublicKey
}

var _ crypto.Signer = (*agentSigner)(nil)

func (s *agentSigner) Public() crypto.PublicKey { return s.pub }

// Sign asks the agent to sign digest. crypto.Signer has no context: each
// call is bounded by the agent client's timeout.
func (s *agentSigner) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	req := api.HostSignRequest{Identity: s.k.identity, Digest: digest, Hash: opts.HashFunc().String()}
	if pss, ok := opts.(*rsa.PSSOptions); ok {
		req.PSS, req.PSSSaltLength = true, pss.SaltLength
	}
	var sig api.HostSignature
	if err := s.k.call(context.Background(), api.PathHostSign, req, &sig); err != nil {
		return nil, fmt.Errorf("client: sign through the host agent: %w", err)
	}
	return sig.Signature, nil
}
