package daemon_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"testing"

	"github.com/sigil-dev/sigil/audit"
	"github.com/sigil-dev/sigil/internal/config"
	"github.com/sigil-dev/sigil/internal/daemon"
)

// storedNote is a store holding one checkpoint note (or none).
type storedNote []byte

func (n storedNote) LatestCheckpoint(context.Context) ([]byte, error) { return n, nil }

// A log's origin: the configured one; else the one its stored checkpoints
// already use if that is the legacy TRUST_DOMAIN/sigil-audit and they are
// signed by the log's key; else TRUST_DOMAIN/sigil-audit/ID from the key.
// Two keys, two origins.
func TestAuditOrigin(t *testing.T) {
	t.Parallel()
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	k, other := key(), key()
	legacyNote := func(k *ecdsa.PrivateKey) storedNote {
		s, err := audit.NewSigner("sigil.test/sigil-audit", k)
		if err != nil {
			t.Fatal(err)
		}
		n, err := s.Sign(audit.Checkpoint{Origin: s.Name(), Size: 0, Hash: make([]byte, audit.HashSize)})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	derived, err := audit.Origin("sigil.test", k.Public())
	if err != nil {
		t.Fatal(err)
	}
	otherDerived, _ := audit.Origin("sigil.test", other.Public())
	if derived == otherDerived || len(derived) != len("sigil.test/sigil-audit/")+16 {
		t.Fatalf("origins %q and %q: want one per key", derived, otherDerived)
	}
	for _, tt := range []struct {
		name       string
		configured string
		stored     storedNote
		want       string
	}{
		{"configured", "example.com/log", legacyNote(k), "example.com/log"},
		{"new-log", "", nil, derived},
		{"legacy-log-keeps-its-name", "", legacyNote(k), "sigil.test/sigil-audit"},
		{"legacy-name-by-another-key", "", legacyNote(other), derived},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := &config.Config{TrustDomain: "sigil.test", Audit: config.Audit{Origin: tt.configured}}
			got, err := daemon.AuditOrigin(t.Context(), cfg, tt.stored, k.Public(), nil)
			if err != nil || got != tt.want {
				t.Fatalf("AuditOrigin = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}
