package client

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"go.step.sm/crypto/pemutil"

	"github.com/sigil-dev/sigil/api"
	"github.com/sigil-dev/sigil/tpm"
)

// Renew renews the certificate in stateDir: over mTLS with the current
// certificate and TPM key, it quotes the PCRs over the server's nonce with
// the host's AK and sends a CSR by the same key.
func Renew(ctx context.Context, stateDir string) (*State, error) {
	w, err := Open(ctx, stateDir)
	if err != nil {
		return nil, err
	}
	defer w.Close()
	return w.Renew(ctx)
}

// Renew renews the workload's certificate and saves it. Tokens and
// connections of the previous certificate stay usable until it expires.
func (w *Workload) Renew(ctx context.Context) (*State, error) {
	w.renewMu.Lock()
	defer w.renewMu.Unlock()
	st, err := w.k.renew(ctx, w.cur.Load())
	if err != nil {
		return nil, err
	}
	w.cur.Store(newIdentity(st, w.k.signer()))
	return st, nil
}

// tpmKeeper is a workload whose key this process uses with the TPM.
type tpmKeeper struct {
	dir    string
	tpm    *tpm.TPM
	ownTPM bool // opened for this workload: closed with it
	ak     *tpm.AK
	key    *tpm.Key
	facts  *api.Workload // asserted by a host agent with each renewal; nil otherwise
}

func (k *tpmKeeper) signer() crypto.Signer { return k.key }

func (k *tpmKeeper) close() error {
	k.key.Close()
	if k.ownTPM {
		return k.tpm.Close()
	}
	return nil
}

// renew quotes over a renewal challenge with the host's AK and has the
// server renew id's certificate for the same key.
func (k *tpmKeeper) renew(ctx context.Context, id *identity) (*State, error) {
	url := func(p string) string { return id.state.serverURL(p) }
	var ch api.Challenge
	if err := post(ctx, id.hc, url(api.PathRenewChallenge), struct{}{}, &ch); err != nil {
		return nil, fmt.Errorf("renew %s: %w", id.state.SPIFFEID, err)
	}
	if err := k.checkAK(ctx, id.state, ch.AKHash); err != nil {
		return nil, fmt.Errorf("renew %s: %w", id.state.SPIFFEID, err)
	}
	platform, err := quote(ctx, k.ak, ch.Nonce)
	if err != nil {
		return nil, err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: id.state.Chain[0].URIs}, k.key)
	if err != nil {
		return nil, fmt.Errorf("client: sign CSR with the TPM key: %w", err)
	}
	req := api.RenewRequest{ChallengeID: ch.ID, Platform: platform, CSR: csr, AKHash: akHash(k.ak), Workload: k.facts}
	var cert api.Certificate
	if err := post(ctx, id.hc, url(api.PathRenew), req, &cert); err != nil {
		return nil, fmt.Errorf("renew %s: %w", id.state.SPIFFEID, err)
	}
	return id.state.update(k.dir, k.key.Public(), &cert)
}

// ErrAKReplaced means the device's AK on the server is not the one this
// workload quotes with: the host's AK was replaced (sigil enroll
// --replace-ak) and this workload's state does not use the host's new one.
// Renewing cannot succeed until it does; the error says how.
var ErrAKReplaced = errors.New("the device's attestation key was replaced")

// checkAK compares the AK the server expects, if it says, with the
// workload's, first loading the host's AK again if it was replaced since
// the workload was opened.
func (k *tpmKeeper) checkAK(ctx context.Context, st *State, want string) error {
	got := akHash(k.ak)
	if want == "" || want == got {
		return nil
	}
	if st.HostState != "" {
		ak, err := loadAK(ctx, k.tpm, st.HostState)
		if err != nil {
			return err
		}
		if k.ak, got = ak, akHash(ak); got == want {
			return nil
		}
	}
	where := "its host state " + st.HostState + " holds AK " + got
	if st.HostState == "" {
		where = "its state " + k.dir + " keeps its own AK " + got + " (written before host state existed)"
	}
	return fmt.Errorf("%w: the server expects a quote by AK %s, but %s; enroll this identity again with the host state that holds the new AK (sigil enroll --host-state DIR)", ErrAKReplaced, want, where)
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
	if st.bundle, err = pemutil.ParseCertificateBundle(bundle); err != nil {
		return nil, fmt.Errorf("client: %s: %w", BundleFile, err)
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
