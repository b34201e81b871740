package client

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/sigil-dev/sigil/api"
)

// Renew renews the certificate in stateDir: over mTLS with the current
// certificate and TPM key, it quotes the PCRs over the server's nonce with
// the AK pinned at enrollment and sends a CSR by the same key.
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
	id := w.cur.Load()
	var ch api.Challenge
	if err := post(ctx, id.hc, w.url(api.PathRenewChallenge), struct{}{}, &ch); err != nil {
		return nil, fmt.Errorf("renew %s: %w", id.state.SPIFFEID, err)
	}
	if err := w.checkAK(ctx, ch.AKHash); err != nil {
		return nil, fmt.Errorf("renew %s: %w", id.state.SPIFFEID, err)
	}
	platform, err := quote(ctx, w.ak, ch.Nonce)
	if err != nil {
		return nil, err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: id.state.Chain[0].URIs}, w.key)
	if err != nil {
		return nil, fmt.Errorf("client: sign CSR with the TPM key: %w", err)
	}
	var cert api.Certificate
	if err := post(ctx, id.hc, w.url(api.PathRenew), api.RenewRequest{ChallengeID: ch.ID, Platform: platform, CSR: csr, AKHash: akHash(w.ak), Workload: w.facts}, &cert); err != nil {
		return nil, fmt.Errorf("renew %s: %w", id.state.SPIFFEID, err)
	}
	st, err := id.state.update(w.dir, w.key.Public(), &cert)
	if err != nil {
		return nil, err
	}
	w.cur.Store(newIdentity(st, w.key))
	return st, nil
}

// ErrAKReplaced means the device's AK on the server is not the one this
// workload quotes with: the host's AK was replaced (sigil enroll
// --replace-ak) and this workload's state does not use the host's new one.
// Renewing cannot succeed until it does; the error says how.
var ErrAKReplaced = errors.New("the device's attestation key was replaced")

// checkAK compares the AK the server expects, if it says, with the
// workload's, first loading the host's AK again if it was replaced since
// the workload was opened.
func (w *Workload) checkAK(ctx context.Context, want string) error {
	got := akHash(w.ak)
	if want == "" || want == got {
		return nil
	}
	if dir := w.State().HostState; dir != "" {
		ak, err := loadAK(ctx, w.tpm, dir)
		if err != nil {
			return err
		}
		if w.ak, got = ak, akHash(ak); got == want {
			return nil
		}
	}
	where := "its host state " + w.State().HostState + " holds AK " + got
	if w.State().HostState == "" {
		where = "its state " + w.dir + " keeps its own AK " + got + " (written before host state existed)"
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
	return st, nil
}

func (st *State) chainDER() [][]byte {
	out := make([][]byte, len(st.Chain))
	for i, c := range st.Chain {
		out[i] = c.Raw
	}
	return out
}
