package client

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/sigil-dev/sigil/tpm"
)

// Host state: the attestation key every enrollment on a host shares.
//
// One EK binds one AK at a time on the server, so a host (one TPM) has one
// AK, created and activated by its first enrollment and reused by every
// later one; each enrollment still brings its own quote and its own
// AK-certified key over the server's nonce. The AK lives in a host state
// directory that the CLI, `sigil agent` and this package agree on
// (HostStateEnv, else DefaultHostState), in one subdirectory per TPM named
// by the hex SHA-256 of its EK public key (PKIX DER):
//
//	HOST_STATE/EKHASH/ak.blob   the AK (tpm.AKFile), readable only by its owner
//	HOST_STATE/EKHASH/lock      serialises the AK's creation and replacement
//
// A workload's state directory records that subdirectory (State.HostState)
// and quotes with the AK found there, so that after the AK was replaced
// (EnrollConfig.ReplaceAK) every workload of the host renews with the new
// one.
const (
	// HostStateEnv names the host state directory when no flag or
	// EnrollConfig.HostState does.
	HostStateEnv = "SIGIL_HOST_STATE"
	// SystemHostState is the default host state directory of root.
	SystemHostState = "/var/lib/sigil/host"
	hostLockFile    = "lock"
)

// DefaultHostState is the host state directory used when none is given:
// $SIGIL_HOST_STATE if set; /var/lib/sigil/host for root (the system
// service, `sigil agent --host`); otherwise $XDG_STATE_HOME/sigil/host,
// by default ~/.local/state/sigil/host.
func DefaultHostState() string {
	if d := os.Getenv(HostStateEnv); d != "" {
		return d
	}
	if os.Geteuid() == 0 {
		return SystemHostState
	}
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "sigil", "host")
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".local", "state", "sigil", "host")
	}
	return SystemHostState
}

// hostAK is the host's AK for one TPM and the directory it is kept in.
type hostAK struct {
	dir   string // HOST_STATE/EKHASH, absolute
	ak    *tpm.AK
	fresh bool // created now: the server has not seen it
}

// hostDir is the host state subdirectory of the TPM whose EK is ek.
func hostDir(root string, ek tpm.EK) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(ek.Public)
	if err != nil {
		return "", fmt.Errorf("client: EK public key: %w", err)
	}
	sum := sha256.Sum256(der)
	abs, err := filepath.Abs(filepath.Join(root, hex.EncodeToString(sum[:])))
	if err != nil {
		return "", fmt.Errorf("client: host state %s: %w", root, err)
	}
	return abs, nil
}

// useHostAK loads the host's AK for the TPM of ek from root, creating it
// when there is none yet or when replace asks for a new one. Creation is
// serialised by a lock file, so concurrent first enrollments on a host
// share one AK. A replacement is saved only after the server accepted it
// (hostAK.commit); until then the others keep the old one.
func useHostAK(ctx context.Context, t *tpm.TPM, root string, ek tpm.EK, replace bool) (*hostAK, error) {
	dir, err := hostDir(root, ek)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("client: host state: %w", err)
	}
	unlock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if !replace {
		ak, err := loadAK(ctx, t, dir)
		if err == nil || !errors.Is(err, fs.ErrNotExist) {
			return &hostAK{dir: dir, ak: ak}, err
		}
	}
	ak, err := t.NewAK(ctx)
	if err != nil {
		return nil, err
	}
	h := &hostAK{dir: dir, ak: ak, fresh: true}
	if replace {
		return h, nil
	}
	return h, tpm.Save(dir, ak, nil)
}

// commit saves the AK as the host's, replacing any other.
func (h *hostAK) commit() error {
	unlock, err := lockDir(h.dir)
	if err != nil {
		return err
	}
	defer unlock()
	return tpm.Save(h.dir, h.ak, nil)
}

// loadAK loads the AK kept in dir; fs.ErrNotExist if there is none.
func loadAK(ctx context.Context, t *tpm.TPM, dir string) (*tpm.AK, error) {
	blob, err := os.ReadFile(filepath.Join(dir, tpm.AKFile))
	if err != nil {
		return nil, fmt.Errorf("client: host AK: %w", err)
	}
	ak, err := t.LoadAK(ctx, blob)
	if err != nil {
		return nil, fmt.Errorf("client: host AK in %s (made by another TPM?): %w", dir, err)
	}
	return ak, nil
}

// lockDir takes the exclusive lock of a host state directory.
func lockDir(dir string) (unlock func(), err error) {
	f, err := os.OpenFile(filepath.Join(dir, hostLockFile), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("client: host state lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("client: host state lock %s: %w", f.Name(), err)
	}
	return func() { f.Close() }, nil
}

// akHash is the server's name for an AK: the hex SHA-256 of its TPMT_PUBLIC.
func akHash(ak *tpm.AK) string {
	sum := sha256.Sum256(ak.AttestationParameters().Public)
	return hex.EncodeToString(sum[:])
}
