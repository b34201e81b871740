package audit

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/sigil-dev/sigil/internal/atomicfile"
)

// Export directory layout; see the package documentation.
const (
	// BundleSize is the number of entries per file in an export's
	// entries directory: entries/<first index>.jsonl, all full but the
	// last.
	BundleSize = 1000

	exportCheckpoint  = "checkpoint"
	exportCheckpoints = "checkpoints"
	exportEntries     = "entries"
)

// DirSource is a Source reading an export directory written by WriteExport.
// It checks the layout, not the contents: Verify does.
type DirSource string

var (
	_ Source           = DirSource("")
	_ CheckpointLister = DirSource("")
	_ Bounded          = DirSource("")
)

// Checkpoint returns DIR/checkpoint.
func (d DirSource) Checkpoint(ctx context.Context) ([]byte, error) {
	data, err := readCapped(filepath.Join(string(d), exportCheckpoint), MaxCheckpointSize)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformedExport, err)
	}
	return data, nil
}

// Checkpoints returns the notes in DIR/checkpoints, each named by the
// decimal size of its tree; no such directory is no checkpoints.
func (d DirSource) Checkpoints(ctx context.Context) ([][]byte, error) {
	dir := filepath.Join(string(d), exportCheckpoints)
	des, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformedExport, err)
	}
	notes := make([][]byte, 0, len(des))
	for _, de := range des {
		if n, err := strconv.ParseUint(de.Name(), 10, 64); err != nil || strconv.FormatUint(n, 10) != de.Name() {
			return nil, fmt.Errorf("%w: %s: unexpected file %q", ErrMalformedExport, dir, de.Name())
		}
		data, err := readCapped(filepath.Join(dir, de.Name()), MaxCheckpointSize)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrMalformedExport, err)
		}
		notes = append(notes, data)
	}
	return notes, nil
}

// Entries returns entries [start, end), or fewer if the export ends before
// end.
func (d DirSource) Entries(ctx context.Context, start, end uint64) ([][]byte, error) {
	var out [][]byte
	for first := start - start%BundleSize; first < end; first += BundleSize {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		bundle, err := d.bundle(first)
		if err != nil {
			return nil, err
		}
		lo, hi := max(start, first)-first, min(end, first+uint64(len(bundle)))-first
		if lo < hi {
			out = append(out, bundle[lo:hi]...)
		}
		if len(bundle) < BundleSize {
			return out, d.checkLast(first)
		}
	}
	return out, nil
}

// Unsigned counts the entries in DIR/entries at index size and beyond, in
// every entries file there. A file there that is not an entries file
// (<first index>.jsonl, first a multiple of BundleSize) is
// ErrMalformedExport.
func (d DirSource) Unsigned(ctx context.Context, size uint64) (uint64, error) {
	dir := filepath.Join(string(d), exportEntries)
	des, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrMalformedExport, err)
	}
	var n uint64
	for _, de := range des {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		first, ok := bundleIndex(de.Name())
		if !ok {
			return 0, fmt.Errorf("%w: %s: unexpected file %q", ErrMalformedExport, dir, de.Name())
		}
		if first+BundleSize <= size {
			continue // Entries read it whole and checked it is full
		}
		lines, err := d.bundle(first)
		if err != nil {
			return 0, err
		}
		if end := first + uint64(len(lines)); end > size {
			n += end - max(first, size)
		}
	}
	return n, nil
}

// bundleIndex parses the name of an entries file: the decimal index of its
// first entry, a multiple of BundleSize, and ".jsonl".
func bundleIndex(name string) (uint64, bool) {
	num, ok := strings.CutSuffix(name, ".jsonl")
	first, err := strconv.ParseUint(num, 10, 64)
	return first, ok && err == nil && strconv.FormatUint(first, 10) == num && first%BundleSize == 0
}

// checkLast checks that the bundle at first, which is not full, is the last.
func (d DirSource) checkLast(first uint64) error {
	next := filepath.Join(string(d), exportEntries, strconv.FormatUint(first+BundleSize, 10)+".jsonl")
	if _, err := os.Stat(next); err == nil {
		return fmt.Errorf("%w: the entries file of index %d is not full but is followed by %s", ErrMalformedExport, first, next)
	}
	return nil
}

// bundle reads the entries file starting at index first: none if there is
// no such file.
func (d DirSource) bundle(first uint64) ([][]byte, error) {
	path := filepath.Join(string(d), exportEntries, strconv.FormatUint(first, 10)+".jsonl")
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformedExport, err)
	}
	defer f.Close()
	lines, err := readLines(bufio.NewReader(f), BundleSize)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrMalformedExport, path, err)
	}
	return lines, nil
}

// readLines reads at most max newline-terminated lines, each at most
// MaxEntrySize bytes without its newline.
func readLines(r *bufio.Reader, max int) ([][]byte, error) {
	var lines [][]byte
	for {
		line, err := readLine(r)
		if err == io.EOF {
			return lines, nil
		}
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", len(lines)+1, err)
		}
		if len(lines) == max {
			return nil, fmt.Errorf("more than %d lines", max)
		}
		lines = append(lines, line)
	}
}

// readLine reads one newline-terminated line and returns it without the
// newline; io.EOF at a clean end.
func readLine(r *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		chunk, err := r.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > MaxEntrySize+1 {
			return nil, fmt.Errorf("longer than %d bytes", MaxEntrySize)
		}
		switch {
		case err == nil:
			return line[:len(line)-1], nil
		case err == io.EOF && len(line) == 0:
			return nil, io.EOF
		case err == io.EOF:
			return nil, errors.New("trailing data without a newline")
		case !errors.Is(err, bufio.ErrBufferFull):
			return nil, err
		}
	}
}

// WriteExport writes the log in s to dir (created if missing) in the export
// format: the entries covered by the latest checkpoint, the checkpoints s
// lists if it is a CheckpointLister, and the latest checkpoint, written
// last, so that a complete checkpoint file means a complete export. The
// entries name users, scopes and why attestations failed: directories
// are created 0700 and files written 0600, readable by their owner only.
func WriteExport(ctx context.Context, s Storage, dir string) error {
	note, err := s.LatestCheckpoint(ctx)
	if err != nil {
		return readErr("latest checkpoint", err)
	}
	if len(note) == 0 {
		return ErrNoCheckpoint
	}
	cp, err := PeekCheckpoint(note)
	if err != nil {
		return err
	}
	if note, err = cosigned(ctx, s, note, cp.Size); err != nil {
		return err
	}
	for _, sub := range []string{".", exportEntries, exportCheckpoints} {
		if err := os.MkdirAll(filepath.Join(dir, sub), exportDirMode); err != nil {
			return fmt.Errorf("audit: export: %w", err)
		}
	}
	for first := uint64(0); first < cp.Size; first += BundleSize {
		if err := writeBundle(ctx, s, dir, first, min(first+BundleSize, cp.Size)); err != nil {
			return err
		}
	}
	if err := writeCheckpoints(ctx, s, dir, note, cp.Size); err != nil {
		return err
	}
	return atomicfile.WriteMode(filepath.Join(dir, exportCheckpoint), note, exportFileMode)
}

// CosignatureReader is an optional interface of a Storage: the witness
// cosignature lines stored for the checkpoint of size. WriteExport
// appends them to the latest checkpoint, so that an offline auditor can
// require them (VerifyOptions.MinWitnesses).
type CosignatureReader interface {
	Cosignatures(ctx context.Context, size uint64) ([][]byte, error)
}

// cosigned returns note with the cosignatures s stores for it, if s is a
// CosignatureReader.
func cosigned(ctx context.Context, s Storage, note []byte, size uint64) ([]byte, error) {
	r, ok := s.(CosignatureReader)
	if !ok {
		return note, nil
	}
	lines, err := r.Cosignatures(ctx, size)
	if err != nil {
		return nil, readErr("cosignatures", err)
	}
	note = bytes.Clone(note)
	for _, l := range lines {
		note = append(note, l...)
	}
	if len(note) > MaxCheckpointSize {
		return nil, fmt.Errorf("audit: export: the cosigned checkpoint is %d bytes, more than %d", len(note), MaxCheckpointSize)
	}
	return note, nil
}

// Modes of an export's directories and files: its owner's only.
const (
	exportDirMode  = 0o700
	exportFileMode = 0o600
)

// writeBundle writes entries [first, end) to entries/<first>.jsonl.
func writeBundle(ctx context.Context, s Storage, dir string, first, end uint64) error {
	var buf bytes.Buffer
	for start := first; start < end; start += readChunk {
		stop := min(start+readChunk, end)
		entries, err := s.Entries(ctx, start, stop)
		if err != nil {
			return readErr(fmt.Sprintf("entries [%d, %d)", start, stop), err)
		}
		if uint64(len(entries)) != stop-start {
			return fmt.Errorf("audit: export: read entries [%d, %d): got %d", start, stop, len(entries))
		}
		for i, e := range entries {
			if bytes.IndexByte(e, '\n') >= 0 {
				return fmt.Errorf("audit: export: entry %d holds a newline", start+uint64(i))
			}
			buf.Write(e)
			buf.WriteByte('\n')
		}
	}
	path := filepath.Join(dir, exportEntries, strconv.FormatUint(first, 10)+".jsonl")
	return atomicfile.WriteMode(path, buf.Bytes(), exportFileMode)
}

// writeCheckpoints writes latest and the checkpoints s lists, up to size,
// to checkpoints/<size>.
func writeCheckpoints(ctx context.Context, s Storage, dir string, latest []byte, size uint64) error {
	notes := [][]byte{latest}
	if l, ok := s.(CheckpointLister); ok {
		more, err := l.Checkpoints(ctx)
		if err != nil {
			return readErr("checkpoints", err)
		}
		notes = append(notes, more...)
	}
	for _, n := range notes {
		c, err := PeekCheckpoint(n)
		if err != nil {
			return fmt.Errorf("audit: export: stored checkpoint: %w", err)
		}
		if c.Size > size {
			continue // stored after the latest was read
		}
		if err := atomicfile.WriteMode(filepath.Join(dir, exportCheckpoints, strconv.FormatUint(c.Size, 10)), n, exportFileMode); err != nil {
			return err
		}
	}
	return nil
}
