package tpm

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/sigil-dev/sigil/internal/atomicfile"
)

// Files Save writes to and Load reads from a workload's state directory.
const (
	AKFile     = "ak.blob"  // AK.Marshal
	KeyFile    = "key.blob" // Key.Marshal
	KeyPEMFile = "key.pem"  // Key.TSS2PEM, for OpenSSL's tpm2 provider
)

// Save writes the AK, if not nil, and the key, if not nil (blob and TSS2
// PEM), to dir, each file replaced atomically with mode 0600. The blobs are
// encrypted by the TPM and only useful with it.
func Save(dir string, ak *AK, key *Key) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("tpm: save: %w", err)
	}
	if ak != nil {
		if err := writeFile(filepath.Join(dir, AKFile), ak.Marshal()); err != nil {
			return err
		}
	}
	if key == nil {
		return nil
	}
	pem, err := key.TSS2PEM()
	if err != nil {
		return err
	}
	if err := writeFile(filepath.Join(dir, KeyFile), key.Marshal()); err != nil {
		return err
	}
	return writeFile(filepath.Join(dir, KeyPEMFile), pem)
}

// Load loads the AK and key that Save wrote to dir. The key is nil when dir
// holds only an AK. The key stays loaded until Key.Close.
func (t *TPM) Load(ctx context.Context, dir string) (*AK, *Key, error) {
	akBlob, err := os.ReadFile(filepath.Join(dir, AKFile))
	if err != nil {
		return nil, nil, fmt.Errorf("tpm: load: %w", err)
	}
	ak, err := t.LoadAK(ctx, akBlob)
	if err != nil {
		return nil, nil, err
	}
	keyBlob, err := os.ReadFile(filepath.Join(dir, KeyFile))
	if errors.Is(err, os.ErrNotExist) {
		return ak, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("tpm: load: %w", err)
	}
	key, err := t.LoadKey(ctx, keyBlob)
	if err != nil {
		return nil, nil, err
	}
	return ak, key, nil
}

// writeFile replaces path with data through a temporary file and rename.
func writeFile(path string, data []byte) error {
	if err := atomicfile.Write(path, data); err != nil {
		return fmt.Errorf("tpm: save %s: %w", path, err)
	}
	return nil
}
