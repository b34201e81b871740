package audit

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	tlog "github.com/transparency-dev/formats/log"
	"golang.org/x/mod/sumdb/note"
)

// MaxCheckpointSize bounds a signed checkpoint note, signatures included.
const MaxCheckpointSize = 16 << 10

// timeLine starts the checkpoint's one extension line.
const timeLine = "time "

// Checkpoint is a signed statement of the log: its first Size entries have
// the RFC 6962 root Hash. Time is when the log signed it (zero: not
// stated).
type Checkpoint struct {
	Origin string
	Size   uint64
	Hash   []byte
	Time   time.Time
}

// text returns the checkpoint body (C2SP tlog-checkpoint): origin, size,
// base64 root hash and, when Time is set, the extension line
// "time <RFC 3339 UTC>", each line ending in a newline.
func (c Checkpoint) text() (string, error) {
	if !validName(c.Origin) {
		return "", fmt.Errorf("%w: origin %q: want a non-empty line without spaces or '+'", ErrMalformedCheckpoint, c.Origin)
	}
	if len(c.Hash) != HashSize {
		return "", fmt.Errorf("%w: root hash is %d bytes, want %d", ErrMalformedCheckpoint, len(c.Hash), HashSize)
	}
	body := string(tlog.Checkpoint{Origin: c.Origin, Size: c.Size, Hash: c.Hash}.Marshal())
	if c.Time.IsZero() {
		return body, nil
	}
	if y := c.Time.UTC().Year(); y < 1 || y > 9999 {
		return "", fmt.Errorf("%w: time %v out of range", ErrMalformedCheckpoint, c.Time)
	}
	return body + timeLine + c.Time.UTC().Format(time.RFC3339Nano) + "\n", nil
}

// parseText parses a checkpoint body strictly: the three C2SP lines, at
// most the time extension line, and nothing text would not write.
func parseText(text string) (Checkpoint, error) {
	var tc tlog.Checkpoint
	rest, err := tc.Unmarshal([]byte(text))
	if err != nil {
		return Checkpoint{}, fmt.Errorf("%w: %v", ErrMalformedCheckpoint, err)
	}
	c := Checkpoint{Origin: tc.Origin, Size: tc.Size, Hash: tc.Hash}
	if c.Time, err = parseExtensions(string(rest)); err != nil {
		return Checkpoint{}, err
	}
	canon, err := c.text()
	if err != nil {
		return Checkpoint{}, err
	}
	if canon != text {
		return Checkpoint{}, fmt.Errorf("%w: not in canonical form", ErrMalformedCheckpoint)
	}
	return c, nil
}

// parseExtensions parses the lines after the root hash: none, or the time
// line. Unknown extension lines are refused: this log writes none.
func parseExtensions(rest string) (time.Time, error) {
	if rest == "" {
		return time.Time{}, nil
	}
	line, after, ok := strings.Cut(rest, "\n")
	if !ok || after != "" || !strings.HasPrefix(line, timeLine) {
		return time.Time{}, fmt.Errorf("%w: unexpected extension lines", ErrMalformedCheckpoint)
	}
	t, err := time.Parse(time.RFC3339Nano, strings.TrimPrefix(line, timeLine))
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: time line: %v", ErrMalformedCheckpoint, err)
	}
	return t.UTC(), nil
}

// OpenCheckpoint verifies a signed checkpoint note and returns the
// checkpoint. It requires a note of at most MaxCheckpointSize bytes, a
// valid signature by v's key under v's name, and a checkpoint text in
// canonical form whose origin is exactly v.Name(). Signatures by other
// keys (witness cosignatures, say) are ignored, as the signed-note format
// asks; a signature that claims v's key and does not verify fails the
// note. Errors match ErrMalformedCheckpoint, ErrCheckpointSignature or
// ErrOriginMismatch.
func OpenCheckpoint(data []byte, v *Verifier) (Checkpoint, error) {
	if v == nil {
		return Checkpoint{}, errors.New("audit: open checkpoint: nil verifier")
	}
	if len(data) > MaxCheckpointSize {
		return Checkpoint{}, fmt.Errorf("%w: %d bytes, at most %d", ErrMalformedCheckpoint, len(data), MaxCheckpointSize)
	}
	n, err := note.Open(data, note.VerifierList(v))
	if err != nil {
		return Checkpoint{}, openError(err, v)
	}
	c, err := parseText(n.Text)
	if err != nil {
		return Checkpoint{}, err
	}
	if c.Origin != v.Name() {
		return Checkpoint{}, fmt.Errorf("%w: got %q, want %q", ErrOriginMismatch, c.Origin, v.Name())
	}
	return c, nil
}

// openError classifies a note.Open failure.
func openError(err error, v *Verifier) error {
	var unverified *note.UnverifiedNoteError
	var invalid *note.InvalidSignatureError
	switch {
	case errors.As(err, &unverified):
		return fmt.Errorf("%w: no signature by %s", ErrCheckpointSignature, v.ID())
	case errors.As(err, &invalid):
		return fmt.Errorf("%w: the signature by %s does not verify", ErrCheckpointSignature, v.ID())
	}
	return fmt.Errorf("%w: %v", ErrMalformedCheckpoint, err)
}

// PeekCheckpoint parses a signed checkpoint note WITHOUT verifying any
// signature: use it only to find which log a note claims to be from or to
// display it, never to trust it. OpenCheckpoint is the verified parse.
func PeekCheckpoint(data []byte) (Checkpoint, error) {
	if len(data) > MaxCheckpointSize {
		return Checkpoint{}, fmt.Errorf("%w: %d bytes, at most %d", ErrMalformedCheckpoint, len(data), MaxCheckpointSize)
	}
	i := bytes.LastIndex(data, []byte("\n\n"))
	if i < 0 {
		return Checkpoint{}, fmt.Errorf("%w: no signature block", ErrMalformedCheckpoint)
	}
	return parseText(string(data[:i+1]))
}

// validName reports whether s can be a signed-note key name and origin:
// non-empty UTF-8 without spaces, control characters or '+'.
func validName(s string) bool {
	return s != "" && utf8.ValidString(s) && !strings.ContainsRune(s, '+') &&
		strings.IndexFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) < 0
}
