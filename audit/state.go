package audit

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/sigil-dev/sigil/internal/atomicfile"
)

// loadState reads the auditor's state file: the signed note of the last
// checkpoint verified. A missing file is no state (nil); a file that does
// not open with v is ErrState.
func loadState(path string, v *Verifier) (*Checkpoint, []byte, error) {
	if path == "" {
		return nil, nil, nil
	}
	data, err := readCapped(path, MaxCheckpointSize)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("%w %s: %w", ErrState, path, err)
	}
	cp, err := OpenCheckpoint(data, v)
	if err != nil {
		return nil, nil, fmt.Errorf("%w %s: %w", ErrState, path, err)
	}
	return &cp, data, nil
}

// saveState replaces the state file with note, atomically.
func saveState(path string, note []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("%w: %w", ErrState, err)
	}
	if err := atomicfile.WriteMode(path, note, 0o600); err != nil {
		return fmt.Errorf("%w: %w", ErrState, err)
	}
	return nil
}

// readCapped reads a file of at most max bytes; a longer one is an error.
func readCapped(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, max)
	}
	return data, nil
}
