package audit

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// Entry errors. Decode and Encode wrap ErrMalformedEntry together with one
// of the more precise sentinels below when there is one, so
// errors.Is(err, ErrMalformedEntry) holds for every entry rejected.
var (
	// ErrMalformedEntry: the bytes are not an entry this package writes.
	// An auditor treats the entry as bad; a writer has a bug to fix.
	ErrMalformedEntry = errors.New("audit: malformed entry")
	// ErrEntryTooLarge: the entry is longer than MaxEntrySize.
	ErrEntryTooLarge = errors.New("entry too large")
	// ErrUnknownKind: the entry's kind is none of the Kind constants.
	ErrUnknownKind = errors.New("unknown kind")
	// ErrTrailingData: bytes follow the entry's JSON object.
	ErrTrailingData = errors.New("trailing data")
	// ErrNonCanonical: the entry decodes but is not byte for byte what
	// Encode writes for it (whitespace, key order, escapes, time zone,
	// duplicate keys...): each entry has exactly one encoding.
	ErrNonCanonical = errors.New("not in canonical form")
)

// Checkpoint errors.
var (
	// ErrMalformedCheckpoint: the note or its checkpoint text cannot be
	// parsed, is larger than MaxCheckpointSize or is not canonical.
	ErrMalformedCheckpoint = errors.New("audit: malformed checkpoint")
	// ErrCheckpointSignature: the note carries no valid signature by the
	// log key the verifier was built with (signed by another key, or the
	// signature does not verify). Treat the checkpoint as forged.
	ErrCheckpointSignature = errors.New("audit: checkpoint not signed by the log key")
	// ErrOriginMismatch: the checkpoint is signed by the log key but names
	// another log. Check the origin the verifier was built with.
	ErrOriginMismatch = errors.New("audit: checkpoint origin mismatch")
	// ErrNoCheckpoint: the log has not signed a checkpoint yet. Retry
	// later (HTTP: 503 with Retry-After).
	ErrNoCheckpoint = errors.New("audit: no checkpoint yet")
)

// Log and auditor errors.
var (
	// ErrTampered: the storage does not match the log's own signed
	// checkpoint, or its leaf hashes do not match its entries. Log.Run
	// returns it and stops: do not serve or extend the log; investigate.
	ErrTampered = errors.New("audit: storage does not match the signed log")
	// ErrMissingEntry: the source has fewer entries than the checkpoint
	// covers. It comes wrapped in an EntryError naming the first missing
	// index.
	ErrMissingEntry = errors.New("missing entry")
	// ErrState: the auditor's state file cannot be read or does not hold
	// a checkpoint of this log signed by this key. Check the path, the key
	// and the origin; never delete the file to get past a fork.
	ErrState = errors.New("audit: unusable state file")
	// ErrKeyChanged: the state file holds a checkpoint of the same origin
	// signed by another key: a log under that name was verified before,
	// and this one signs with a new key (a new dev stack, a reset log, or
	// a log impersonating the one audited). It comes wrapped with
	// ErrState. Confirm the new key out of band before trusting it, then
	// start a new state for it; never reuse the old state.
	ErrKeyChanged = errors.New("a log of this origin was verified before under another key")
	// ErrMalformedExport: an export directory does not follow the format
	// in the package documentation.
	ErrMalformedExport = errors.New("audit: malformed export")
)

// malformed wraps ErrMalformedEntry with a precise reason.
func malformed(reason error, format string, args ...any) error {
	if reason == nil {
		return fmt.Errorf("%w: %s", ErrMalformedEntry, fmt.Sprintf(format, args...))
	}
	return fmt.Errorf("%w: %w: %s", ErrMalformedEntry, reason, fmt.Sprintf(format, args...))
}

// EntryError is a failure at one entry: it cannot be read, does not decode,
// or the OnEntry hook refused it. Index is exact.
type EntryError struct {
	Index uint64
	Err   error
}

func (e *EntryError) Error() string {
	return fmt.Sprintf("audit: entry %d: %s", e.Index, strings.TrimPrefix(e.Err.Error(), "audit: "))
}

func (e *EntryError) Unwrap() error { return e.Err }

// MismatchError says entries do not hash to a signed root: one of the
// entries [From, Size) was altered, removed, inserted or moved. From is the
// end of the largest prefix a signed checkpoint vouches for; with one
// checkpoint per batch, the range is one batch.
type MismatchError struct {
	From uint64 // the first entry no verified checkpoint vouches for
	Size uint64 // the size of the checkpoint the entries fail to match
}

func (e *MismatchError) Error() string {
	return fmt.Sprintf("audit: entries %d..%d do not hash to the signed root of size %d: one of them was altered, removed, inserted or moved",
		e.From, e.Size-1, e.Size)
}

// UnsignedError says a source that holds a whole log (a Bounded source,
// an export) holds Count entries from index Size on, beyond its checkpoint
// of that size: no signed checkpoint covers them, so they prove nothing
// and were added after the export was written. Verification fails: an
// auditor must not read them as logged.
type UnsignedError struct {
	Size  uint64 // the checkpoint's size: the index of the first extra entry
	Count uint64 // how many entries lie beyond it
}

func (e *UnsignedError) Error() string {
	return fmt.Sprintf("audit: %d %s from index %d beyond the checkpoint of size %d: no signed checkpoint covers them",
		e.Count, plural(e.Count, "entry", "entries"), e.Size, e.Size)
}

func plural(n uint64, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// ForkError says the log signed two trees that cannot both be true: Old is
// not a prefix of New (same size and another root, or inconsistent). The
// log showed different histories to different readers, or rewrote its own.
type ForkError struct {
	Old, New Checkpoint
}

func (e *ForkError) Error() string {
	return fmt.Sprintf("audit: fork: the checkpoint of size %d (root %s) is not a prefix of the checkpoint of size %d (root %s)",
		e.Old.Size, b64(e.Old.Hash), e.New.Size, b64(e.New.Hash))
}

// RollbackError says the log offered a checkpoint smaller than one already
// seen: an old checkpoint replayed, or a truncated log.
type RollbackError struct {
	Seen Checkpoint // the larger checkpoint seen before or alongside
	Got  Checkpoint // the checkpoint offered as the latest
}

func (e *RollbackError) Error() string {
	return fmt.Sprintf("audit: rollback: offered a checkpoint of size %d after one of size %d was seen", e.Got.Size, e.Seen.Size)
}

func b64(h []byte) string { return base64.StdEncoding.EncodeToString(h) }
