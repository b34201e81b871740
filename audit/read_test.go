package audit_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/sigil-dev/sigil/audit"
)

// keyedStorage is a memStorage that also finds entries by key.
type keyedStorage struct {
	*memStorage
	keys map[string]uint64
}

var _ audit.Finder = keyedStorage{}

var errNoKey = errors.New("no such key")

func (s keyedStorage) Find(_ context.Context, key string) (uint64, error) {
	idx, ok := s.keys[key]
	if !ok {
		return 0, fmt.Errorf("key %q: %w", key, errNoKey)
	}
	return idx, nil
}

// A server reads entries and finds them by key through the Log; the
// storage's not-found error reaches it wrapped, for its 404.
func TestLogEntriesAndFind(t *testing.T) {
	e := newLogEnv(t)
	e.add(t, 3)
	keyed := keyedStorage{memStorage: e.st, keys: map[string]uint64{"serial:ab12": 1}}
	l, err := audit.New(keyed, e.signer, origin)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	got, err := l.Entries(ctx, 1, 3)
	if err != nil || len(got) != 2 || !bytes.Equal(got[0], sampleEntry(t, 1)) || !bytes.Equal(got[1], sampleEntry(t, 2)) {
		t.Fatalf("Entries(1, 3) = %d entries, %v; want entries 1 and 2", len(got), err)
	}
	if idx, err := l.Find(ctx, "serial:ab12"); err != nil || idx != 1 {
		t.Fatalf("Find(serial:ab12) = %d, %v; want 1", idx, err)
	}
	if _, err := l.Find(ctx, "serial:ffff"); !errors.Is(err, errNoKey) {
		t.Fatalf("Find(serial:ffff) = %v, want the storage's not-found error", err)
	}
	if _, err := e.log.Find(ctx, "serial:ab12"); err == nil || !strings.Contains(err.Error(), "cannot find entries by key") {
		t.Fatalf("Find on a storage that is not a Finder = %v", err)
	}
}
