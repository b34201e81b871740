package audit

import (
	"context"
	"errors"
	"fmt"
)

// Finder is an optional interface of a Storage: it finds an entry by one
// of the keys it was appended with ("serial:…", "jti:…"), so that a
// relying party can ask for the inclusion proof of a certificate or token
// it holds.
type Finder interface {
	// Find returns the index of the entry appended with key, or an error
	// wrapping the storage's not-found error.
	Find(ctx context.Context, key string) (uint64, error)
}

// errNoFinder: the Storage is not a Finder.
var errNoFinder = errors.New("the log's storage cannot find entries by key")

// Entries returns the encoded entries [start, end), as stored, for a server
// to serve: nothing here is evidence until a verifier has hashed it up to
// a signed checkpoint. An error reading them wraps the storage's (its
// not-found error when the log ends before end).
func (l *Log) Entries(ctx context.Context, start, end uint64) ([][]byte, error) {
	entries, err := l.storage.Entries(ctx, start, end)
	if err != nil {
		return nil, readErr(fmt.Sprintf("entries [%d, %d)", start, end), err)
	}
	return entries, nil
}

// Find returns the index of the entry appended with key, if the storage is
// a Finder; an error wrapping the storage's not-found error if there is no
// such entry.
func (l *Log) Find(ctx context.Context, key string) (uint64, error) {
	f, ok := l.storage.(Finder)
	if !ok {
		return 0, fmt.Errorf("audit: find entry %q: %w", key, errNoFinder)
	}
	idx, err := f.Find(ctx, key)
	if err != nil {
		return 0, fmt.Errorf("audit: find entry %q: %w", key, err)
	}
	return idx, nil
}
