package identity_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/sigil-dev/sigil/identity"
)

// withLength is spiffe://sigil.test/workload/xxx… of exactly n bytes.
func withLength(n int) string {
	const prefix = "spiffe://sigil.test/workload/"
	return prefix + strings.Repeat("x", n-len(prefix))
}

func TestParse(t *testing.T) {
	longTD := strings.Repeat("a", 256)
	tests := []struct {
		name     string
		in       string
		ok       bool
		workload bool // Workload accepts it too
	}{
		{"workload", "spiffe://sigil.test/workload/web", true, true},
		{"at the length limit", withLength(identity.MaxLength), true, true},
		{"one byte over the limit", withLength(identity.MaxLength + 1), false, false},
		{"3000 bytes", withLength(3000), false, false},
		{"trust domain at its limit", "spiffe://" + longTD[:255] + "/w", true, true},
		{"trust domain over its limit", "spiffe://" + longTD + "/w", false, false},
		{"trust domain ID", "spiffe://sigil.test", true, false},
		{"empty", "", false, false},
		{"upper-case scheme", "SPIFFE://sigil.test/w", false, false},
		{"upper-case trust domain", "spiffe://Sigil.test/w", false, false},
		{"leading space", " spiffe://sigil.test/w", false, false},
		{"trailing newline", "spiffe://sigil.test/w\n", false, false},
		{"control character in the path", "spiffe://sigil.test/w\x00x", false, false},
		{"dot-dot segment", "spiffe://sigil.test/a/../b", false, false},
		{"empty segment", "spiffe://sigil.test/a//b", false, false},
		{"trailing slash", "spiffe://sigil.test/a/", false, false},
		{"percent-encoding", "spiffe://sigil.test/a%2fb", false, false},
		{"query", "spiffe://sigil.test/a?b=c", false, false},
		{"fragment", "spiffe://sigil.test/a#b", false, false},
		{"port", "spiffe://sigil.test:443/a", false, false},
		{"user info", "spiffe://u@sigil.test/a", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := identity.Parse(tt.in)
			if tt.ok != (err == nil) {
				t.Fatalf("Parse(%s) = %v, %v; want ok %v", identity.Quote(tt.in), id, err, tt.ok)
			}
			if err != nil && !errors.Is(err, identity.ErrInvalid) {
				t.Fatalf("Parse error %v is not ErrInvalid", err)
			}
			if err == nil && id.String() != tt.in {
				t.Fatalf("Parse(%q) = %s: not the same ID", tt.in, id)
			}
			if _, err := identity.Workload(tt.in); tt.workload != (err == nil) {
				t.Fatalf("Workload(%s) = %v; want ok %v", identity.Quote(tt.in), err, tt.workload)
			}
		})
	}
}

// Check refuses an ID go-spiffe built without the limits.
func TestCheck(t *testing.T) {
	id := spiffeid.RequireFromString(withLength(3000))
	if err := identity.Check(id); !errors.Is(err, identity.ErrInvalid) || !strings.Contains(err.Error(), "3000 bytes, longer than 2048") {
		t.Fatalf("Check = %v", err)
	}
	if err := identity.Check(spiffeid.ID{}); !errors.Is(err, identity.ErrInvalid) {
		t.Fatalf("Check(zero) = %v", err)
	}
}

// Errors quote no more than the start of a long identity.
func TestErrorsAreShort(t *testing.T) {
	_, err := identity.Parse(withLength(3000) + "/" + strings.Repeat("é", 100))
	if err == nil || len(err.Error()) > 200 {
		t.Fatalf("Parse error of %d bytes: %v", len(err.Error()), err)
	}
	_, err = identity.Parse("spiffe://Sigil.test/" + strings.Repeat("y", 1000))
	if err == nil || len(err.Error()) > 300 {
		t.Fatalf("Parse error of %d bytes: %v", len(err.Error()), err)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"spiffe://sigil.test/workload/web", withLength(identity.MaxLength), "spiffe://sigil.test", "spiffe://a/../b", " spiffe://x/y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := identity.Parse(s)
		if err != nil {
			return
		}
		if len(s) > identity.MaxLength || id.String() != s || identity.Check(id) != nil {
			t.Fatalf("Parse accepted %s as %s", identity.Quote(s), id)
		}
	})
}
