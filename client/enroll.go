package client

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/google/go-attestation/attest"

	"github.com/sigil-dev/sigil/api"
	"github.com/sigil-dev/sigil/tpm"
)

// EnrollConfig says where to enroll and as what.
type EnrollConfig struct {
	// Server is the sigild base URL, https://HOST:PORT.
	Server string
	// CABundle is the PEM trust bundle for the server's certificate,
	// obtained out of band. It is kept in the state directory for renewals.
	CABundle []byte
	// TPM is "/dev/tpmrm0" or "swtpm:HOST:PORT".
	TPM string
	// EventLog is the measured-boot log; empty means the kernel's.
	EventLog string
	// Identity is the SPIFFE ID asked for.
	Identity string
	// StateDir receives the TPM blobs, the key PEM and the certificate.
	StateDir string
	// ServerAuth asks for a certificate that also serves TLS (the
	// serverAuth extended key usage), for a workload that serves mTLS.
	ServerAuth bool
	// HostState is the host state directory holding the AK every
	// enrollment on this host shares; empty means DefaultHostState().
	HostState string
	// ReplaceAK makes a new AK for the host and asks the server to bind the
	// device to it (api.ChallengeRequest.ReplaceAK). Once the server has
	// accepted it, it replaces the AK in HostState, and every workload of
	// the host renews with it from then on.
	ReplaceAK bool
	// Workload, set by a host agent, is what it asserts about the process
	// it enrolls for.
	Workload *api.Workload
}

// Enroll runs the enrollment protocol and saves the result in StateDir.
func Enroll(ctx context.Context, c EnrollConfig) (*State, error) {
	return enrollOn(ctx, nil, c)
}

// EnrollShared is Enroll on t, a TPM the caller opened and shares between
// workloads (the host agent does); it leaves t open.
func EnrollShared(ctx context.Context, t *tpm.TPM, c EnrollConfig) (*State, error) {
	if t == nil {
		return nil, errors.New("client: EnrollShared needs an open TPM")
	}
	return enrollOn(ctx, t, c)
}

// enrollOn enrolls on shared, or on the TPM c names when shared is nil.
func enrollOn(ctx context.Context, shared *tpm.TPM, c EnrollConfig) (*State, error) {
	if err := c.check(); err != nil {
		return nil, err
	}
	roots, err := pool(c.CABundle)
	if err != nil {
		return nil, err
	}
	if shared != nil {
		e := &enrollment{cfg: c, tpm: shared, hc: newHTTPClient(roots, nil)}
		return e.run(ctx)
	}
	var opts []tpm.Option
	if c.EventLog != "" {
		opts = append(opts, tpm.WithEventLog(c.EventLog))
	}
	t, err := tpm.Open(ctx, c.TPM, opts...)
	if err != nil {
		return nil, err
	}
	defer t.Close()
	e := &enrollment{cfg: c, tpm: t, hc: newHTTPClient(roots, nil)}
	return e.run(ctx)
}

func (c EnrollConfig) check() error {
	u, err := url.Parse(c.Server)
	switch {
	case err != nil || u.Scheme != "https" || u.Host == "":
		return fmt.Errorf("client: server %q: want https://HOST:PORT", c.Server)
	case len(c.CABundle) == 0:
		return errors.New("client: no CA bundle to trust the server with")
	case c.Identity == "" || c.StateDir == "" || c.TPM == "":
		return errors.New("client: identity, TPM and state directory are required")
	}
	return nil
}

type enrollment struct {
	cfg EnrollConfig
	tpm *tpm.TPM
	hc  *http.Client
}

func (e *enrollment) url(path string) string {
	return strings.TrimSuffix(e.cfg.Server, "/") + path
}

func (e *enrollment) run(ctx context.Context) (*State, error) {
	ek, err := pickEK(ctx, e.tpm)
	if err != nil {
		return nil, err
	}
	h, err := useHostAK(ctx, e.tpm, cmp.Or(e.cfg.HostState, DefaultHostState()), ek, e.cfg.ReplaceAK)
	if err != nil {
		return nil, err
	}
	ak := h.ak
	ch, err := e.challenge(ctx, ek, ak)
	if err != nil {
		return nil, err
	}
	secret, err := ak.ActivateCredential(ctx, ek, attest.EncryptedCredential{Credential: ch.Credential, Secret: ch.Secret})
	if err != nil {
		return nil, err
	}
	key, err := ak.NewKey(ctx, ch.Nonce)
	if err != nil {
		return nil, err
	}
	defer key.Close()
	req, err := e.completion(ctx, ch, secret, ak, key)
	if err != nil {
		return nil, err
	}
	var cert api.Certificate
	if err := post(ctx, e.hc, e.url(api.PathComplete), req, &cert); err != nil {
		return nil, fmt.Errorf("enroll %s: %w", e.cfg.Identity, err)
	}
	if e.cfg.ReplaceAK {
		if err := h.commit(); err != nil {
			return nil, fmt.Errorf("client: the server bound the device to the new AK, but saving it failed (enroll again with --replace-ak): %w", err)
		}
	}
	return save(e.cfg, h.dir, key, &cert)
}

func (e *enrollment) challenge(ctx context.Context, ek tpm.EK, ak *tpm.AK) (*api.Challenge, error) {
	ekPub, err := x509.MarshalPKIXPublicKey(ek.Public)
	if err != nil {
		return nil, fmt.Errorf("client: EK public key: %w", err)
	}
	p := ak.AttestationParameters()
	req := api.ChallengeRequest{
		EKPublic: ekPub, Identity: e.cfg.Identity, ReplaceAK: e.cfg.ReplaceAK,
		AK: api.AK{Public: p.Public, CreateData: p.CreateData, CreateAttestation: p.CreateAttestation, CreateSignature: p.CreateSignature},
	}
	if ek.Certificate != nil {
		req.EKCertificate = ek.Certificate.Raw
	}
	var ch api.Challenge
	if err := post(ctx, e.hc, e.url(api.PathChallenge), req, &ch); err != nil {
		return nil, fmt.Errorf("enroll %s: %w", e.cfg.Identity, err)
	}
	return &ch, nil
}

func (e *enrollment) completion(ctx context.Context, ch *api.Challenge, secret []byte, ak *tpm.AK, key *tpm.Key) (api.CompleteRequest, error) {
	platform, err := quote(ctx, ak, ch.Nonce)
	if err != nil {
		return api.CompleteRequest{}, err
	}
	id, err := url.Parse(e.cfg.Identity)
	if err != nil {
		return api.CompleteRequest{}, fmt.Errorf("client: identity: %w", err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{id}}, key)
	if err != nil {
		return api.CompleteRequest{}, fmt.Errorf("client: sign CSR with the TPM key: %w", err)
	}
	cp := key.CertificationParameters()
	return api.CompleteRequest{
		ChallengeID: ch.ID, Secret: secret, Platform: platform, CSR: csr, ServerAuth: e.cfg.ServerAuth, Workload: e.cfg.Workload,
		Key: api.CertifiedKey{Public: cp.Public, CreateData: cp.CreateData, CreateAttestation: cp.CreateAttestation, CreateSignature: cp.CreateSignature},
	}, nil
}

// quote quotes the SHA-256 bank over nonce, with the event log.
func quote(ctx context.Context, ak *tpm.AK, nonce []byte) (api.Platform, error) {
	pp, err := ak.Quote(ctx, nonce, attest.HashSHA256)
	if err != nil {
		return api.Platform{}, err
	}
	out := api.Platform{EventLog: pp.EventLog}
	for _, q := range pp.Quotes {
		out.Quotes = append(out.Quotes, api.Quote{Quote: q.Quote, Signature: q.Signature})
	}
	for _, p := range pp.PCRs {
		out.PCRs = append(out.PCRs, api.PCR{Index: p.Index, Alg: "sha256", Digest: p.Digest})
	}
	return out, nil
}

// pickEK prefers an EK with a certificate, RSA first (the EK go-attestation's
// credential activation handles everywhere).
func pickEK(ctx context.Context, t *tpm.TPM) (tpm.EK, error) {
	eks, err := t.EKs(ctx)
	if err != nil {
		return tpm.EK{}, err
	}
	for _, ek := range eks {
		if ek.Certificate != nil {
			return ek, nil
		}
	}
	if len(eks) == 0 {
		return tpm.EK{}, errors.New("client: the TPM has no endorsement key")
	}
	return eks[0], nil
}
