package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/transparency-dev/merkle/compact"

	"github.com/sigil-dev/sigil/internal/atomicfile"
)

// MaxStateSize bounds an auditor's state file: a checkpoint, at most 64
// hashes of its tree's right edge and the OnEntry checker's context (the
// devices it has seen: attest.LogChecker's is about 200 bytes a device
// in the file, so this holds over a million devices).
const MaxStateSize = 256 << 20

// stateFile is the auditor's state file, JSON: the signed note of the last
// checkpoint verified, the hashes of the compact range of its tree (the
// perfect subtrees along its right edge: at most one per bit of its size),
// and the context of VerifyOptions.Context after its last entry. With
// them, the next run hashes only the entries added since: appending them
// to the range must give the new checkpoint's root.
type stateFile struct {
	Checkpoint string   `json:"checkpoint"`
	Range      [][]byte `json:"range"`
	Context    []byte   `json:"context,omitempty"`
}

// state is a loaded state file.
type state struct {
	cp      Checkpoint
	rng     *compact.Range // nil for a state file of only a note (older runs)
	context []byte         // nil if the file has none
}

// loadState reads the auditor's state file. A missing file is no state
// (nil). A file of only a signed note (written before state files held a
// range) is a state without a range: its next run is a full one. Anything
// that does not parse, open with v or match its checkpoint is ErrState.
func loadState(path string, v *Verifier) (*state, error) {
	if path == "" {
		return nil, nil
	}
	data, err := readCapped(path, MaxStateSize)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w %s: %w", ErrState, path, err)
	}
	st, err := parseState(data, v)
	if err != nil {
		return nil, fmt.Errorf("%w %s: %w", ErrState, path, keyChanged(err, data, v))
	}
	return st, nil
}

// keyChanged says ErrKeyChanged when err is a checkpoint signature failure
// of a state whose checkpoint names v's origin.
func keyChanged(err error, data []byte, v *Verifier) error {
	if !errors.Is(err, ErrCheckpointSignature) {
		return err
	}
	note := data
	var f stateFile
	if json.Unmarshal(data, &f) == nil {
		note = []byte(f.Checkpoint)
	}
	if cp, perr := PeekCheckpoint(note); perr == nil && cp.Origin == v.Name() {
		return fmt.Errorf("%w (%s); this log signs with %s: %w", ErrKeyChanged, cp.Origin, v, err)
	}
	return err
}

// parseState parses a state file's bytes: JSON, or a bare note.
func parseState(data []byte, v *Verifier) (*state, error) {
	if !bytes.HasPrefix(data, []byte("{")) {
		cp, err := OpenCheckpoint(data, v)
		if err != nil {
			return nil, err
		}
		return &state{cp: cp}, nil
	}
	var f stateFile
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	if dec.More() {
		return nil, errors.New("parse: data after the state")
	}
	cp, err := OpenCheckpoint([]byte(f.Checkpoint), v)
	if err != nil {
		return nil, err
	}
	rng, err := stateRange(cp, f.Range)
	if err != nil {
		return nil, err
	}
	return &state{cp: cp, rng: rng, context: f.Context}, nil
}

// stateRange rebuilds the compact range of the tree of cp's size from its
// hashes and checks it hashes to cp's root.
func stateRange(cp Checkpoint, hashes [][]byte) (*compact.Range, error) {
	for i, h := range hashes {
		if len(h) != HashSize {
			return nil, fmt.Errorf("range hash %d is %d bytes, want %d", i, len(h), HashSize)
		}
	}
	rng, err := factory.NewRange(0, cp.Size, hashes)
	if err != nil {
		return nil, fmt.Errorf("range: %w", err)
	}
	if !sameHash(rootOf(rng), cp.Hash) {
		return nil, fmt.Errorf("its range does not hash to its checkpoint's root (size %d)", cp.Size)
	}
	return rng, nil
}

// saveState replaces the state file, atomically, with note, the range of
// its tree and context.
func saveState(path string, note []byte, rng *compact.Range, context []byte) error {
	data, err := json.Marshal(stateFile{Checkpoint: string(note), Range: rng.Hashes(), Context: context})
	if err != nil {
		return fmt.Errorf("%w: encode: %w", ErrState, err)
	}
	if len(data) > MaxStateSize {
		return fmt.Errorf("%w: %d bytes, more than %d", ErrState, len(data), MaxStateSize)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("%w: %w", ErrState, err)
	}
	if err := atomicfile.WriteMode(path, data, 0o600); err != nil {
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
