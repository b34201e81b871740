package client

import (
	"context"
	"crypto"
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/sigil-dev/sigil/api"
	"github.com/sigil-dev/sigil/token"
	"github.com/sigil-dev/sigil/tpm"
)

// Workload is an enrolled workload: its certificate and the TPM key behind
// it, ready for mTLS to sigild. The key is used either directly with the
// TPM (Open) or through the host's agent (OpenAgent); the API is the same.
type Workload struct {
	k       keeper
	renewMu sync.Mutex // one renewal at a time
	cur     atomic.Pointer[identity]
}

// keeper holds a workload's key and renews its certificate: the TPM
// itself (tpmKeeper) or the host agent (agentKeeper).
type keeper interface {
	signer() crypto.Signer
	// renew renews the certificate of id and returns the new state.
	renew(ctx context.Context, id *identity) (*State, error)
	close() error
}

// identity is one certificate of the workload and what is bound to it: the
// HTTPS client to sigild that presents it, so that a token fetched through
// hc is bound (cnf) to cert. A renewal makes a new identity; the old one
// keeps working until its certificate expires.
type identity struct {
	state *State
	cert  *tls.Certificate
	thumb string // cnf x5t#S256 of cert
	hc    *http.Client
	peers peerTransports // to workload servers, presenting cert
}

func newIdentity(st *State, key crypto.Signer) *identity {
	cert := &tls.Certificate{Certificate: st.chainDER(), PrivateKey: key, Leaf: st.Chain[0]}
	return &identity{state: st, cert: cert, thumb: token.Thumbprint(st.Chain[0].Raw), hc: newHTTPClient(st.roots, cert)}
}

func newWorkload(st *State, k keeper) *Workload {
	w := &Workload{k: k}
	w.cur.Store(newIdentity(st, k.signer()))
	return w
}

// Open opens the TPM named in dir's state and loads the workload's AK and
// key. Close releases the TPM.
func Open(ctx context.Context, dir string) (*Workload, error) {
	st, err := LoadState(dir)
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
	w, err := openWith(ctx, t, st, dir, nil)
	if err != nil {
		t.Close()
		return nil, err
	}
	w.k.(*tpmKeeper).ownTPM = true
	return w, nil
}

// OpenShared opens the workload in dir on t, a TPM the caller opened and
// shares between workloads (the host agent does): Close leaves t open.
// facts, if not nil, are sent with every renewal as the host agent's
// assertion about the process the workload is for.
func OpenShared(ctx context.Context, t *tpm.TPM, dir string, facts *api.Workload) (*Workload, error) {
	st, err := LoadState(dir)
	if err != nil {
		return nil, err
	}
	return openWith(ctx, t, st, dir, facts)
}

func openWith(ctx context.Context, t *tpm.TPM, st *State, dir string, facts *api.Workload) (*Workload, error) {
	ak, key, err := loadWorkload(ctx, t, st, dir)
	if err == nil && key == nil {
		err = fmt.Errorf("client: %s holds no TPM key: enroll first", dir)
	}
	if err != nil {
		return nil, err
	}
	return newWorkload(st, &tpmKeeper{dir: dir, tpm: t, ak: ak, key: key, facts: facts}), nil
}

// loadWorkload loads the workload's key from dir and the AK it quotes with:
// the host's, or for state written before host state, its own.
func loadWorkload(ctx context.Context, t *tpm.TPM, st *State, dir string) (*tpm.AK, *tpm.Key, error) {
	if st.HostState == "" {
		return t.Load(ctx, dir)
	}
	ak, err := loadAK(ctx, t, st.HostState)
	if err != nil {
		return nil, nil, err
	}
	blob, err := os.ReadFile(filepath.Join(dir, tpm.KeyFile))
	if err != nil {
		return nil, nil, fmt.Errorf("client: %w", err)
	}
	key, err := t.LoadKey(ctx, blob)
	return ak, key, err
}

// Close releases the key, and the TPM if the workload opened it.
func (w *Workload) Close() error { return w.k.close() }

// State is the workload's current enrollment: identity and certificate.
func (w *Workload) State() *State { return w.cur.Load().state }

// Signer is the workload's private key: the TPM key, used directly or
// through the host agent.
func (w *Workload) Signer() crypto.Signer { return w.k.signer() }

// HTTPClient is an HTTPS client that presents the workload's current
// certificate, signing the handshake with the TPM key.
func (w *Workload) HTTPClient() *http.Client { return w.cur.Load().hc }

func (w *Workload) url(path string) string { return w.State().serverURL(path) }

// serverURL is path on the state's sigild.
func (st *State) serverURL(path string) string {
	return strings.TrimSuffix(st.Server, "/") + path
}
