package client

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"strings"

	"github.com/sigil-dev/sigil/tpm"
)

// Workload is an enrolled workload opened from its state directory: its
// certificate and the TPM key behind it, ready for mTLS to sigild.
type Workload struct {
	State *State
	dir   string
	tpm   *tpm.TPM
	ak    *tpm.AK
	key   *tpm.Key
	hc    *http.Client
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
	ak, key, err := t.Load(ctx, dir)
	if err == nil && key == nil {
		err = fmt.Errorf("client: %s holds no TPM key: enroll first", dir)
	}
	if err != nil {
		t.Close()
		return nil, err
	}
	w := &Workload{State: st, dir: dir, tpm: t, ak: ak, key: key}
	w.hc = newHTTPClient(st.roots, &tls.Certificate{Certificate: st.chainDER(), PrivateKey: key, Leaf: st.Chain[0]})
	return w, nil
}

// Close releases the key and the TPM.
func (w *Workload) Close() error {
	w.key.Close()
	return w.tpm.Close()
}

// HTTPClient is an HTTPS client that presents the workload's certificate,
// signing the handshake with the TPM key.
func (w *Workload) HTTPClient() *http.Client { return w.hc }

func (w *Workload) url(path string) string {
	return strings.TrimSuffix(w.State.Server, "/") + path
}
