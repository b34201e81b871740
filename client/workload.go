package client

import (
	"context"
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

// Workload is an enrolled workload opened from its state directory: its
// certificate and the TPM key behind it, ready for mTLS to sigild.
type Workload struct {
	dir     string
	tpm     *tpm.TPM
	ak      *tpm.AK
	key     *tpm.Key
	facts   *api.Workload // asserted by a host agent with each renewal; nil otherwise
	renewMu sync.Mutex    // one renewal at a time
	cur     atomic.Pointer[identity]
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

func newIdentity(st *State, key *tpm.Key) *identity {
	cert := &tls.Certificate{Certificate: st.chainDER(), PrivateKey: key, Leaf: st.Chain[0]}
	return &identity{state: st, cert: cert, thumb: token.Thumbprint(st.Chain[0].Raw), hc: newHTTPClient(st.roots, cert)}
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
	ak, key, err := loadWorkload(ctx, t, st, dir)
	if err == nil && key == nil {
		err = fmt.Errorf("client: %s holds no TPM key: enroll first", dir)
	}
	if err != nil {
		t.Close()
		return nil, err
	}
	w := &Workload{dir: dir, tpm: t, ak: ak, key: key}
	w.cur.Store(newIdentity(st, key))
	return w, nil
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

// Close releases the key and the TPM.
func (w *Workload) Close() error {
	w.key.Close()
	return w.tpm.Close()
}

// State is the workload's current enrollment: identity and certificate.
func (w *Workload) State() *State { return w.cur.Load().state }

// HTTPClient is an HTTPS client that presents the workload's current
// certificate, signing the handshake with the TPM key.
func (w *Workload) HTTPClient() *http.Client { return w.cur.Load().hc }

func (w *Workload) url(path string) string {
	return strings.TrimSuffix(w.State().Server, "/") + path
}
