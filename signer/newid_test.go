package signer_test

import (
	"encoding/base64"
	"encoding/binary"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/signer"
)

// TestNewID: an ID is 24 base64url characters, 18 bytes: the time it was
// made, in milliseconds, then 96 random bits, never the same twice.
func TestNewID(t *testing.T) {
	t.Parallel()
	before := time.Now().UnixMilli()
	ids := make(map[string]bool)
	randoms := make(map[string]bool)
	for range 1000 {
		id := signer.NewID()
		b, err := base64.RawURLEncoding.Strict().DecodeString(id)
		if err != nil || len(id) != 24 || len(b) != 18 {
			t.Fatalf("NewID() = %q (%d bytes, %v), want 24 base64url characters, 18 bytes", id, len(b), err)
		}
		ms := int64(binary.BigEndian.Uint64(b[:8]) >> 16)
		if after := time.Now().UnixMilli(); ms < before || ms > after {
			t.Fatalf("NewID() = %q made at %d ms, want within [%d, %d]", id, ms, before, after)
		}
		if ids[id] || randoms[string(b[6:])] {
			t.Fatalf("NewID() = %q twice, or its random bits", id)
		}
		ids[id], randoms[string(b[6:])] = true, true
	}
}
