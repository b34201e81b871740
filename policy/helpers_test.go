package policy

import (
	"bytes"
	"crypto/sha256"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// sha is the SHA-256 of a label; the dev fixtures use such digests.
func sha(label string) []byte {
	h := sha256.Sum256([]byte(label))
	return h[:]
}

// devDevice is a device the dev policy set lets enroll.
func devDevice() DeviceFacts {
	return DeviceFacts{
		EKHash:       sha("dev-ek-1"),
		EKIssuer:     "CN=swtpm-localca",
		AKHash:       sha("dev-ak-1"),
		SecureBoot:   true,
		PCRs:         map[int][]byte{0: sha("bootloader"), 7: sha("kernel")},
		EventDigests: [][]byte{sha("bootloader"), sha("kernel")},
	}
}

// debugDevice measured the debug firmware.
func debugDevice() DeviceFacts {
	d := devDevice()
	d.EventDigests = append(d.EventDigests, sha("debug-firmware"))
	return d
}

func devCaller() Caller {
	return Caller{SPIFFEID: "spiffe://sigil.test/workload/web", PolicyVersion: "sha256:00", Device: devDevice()}
}

func mustLoad(t *testing.T, dir string) *Set {
	t.Helper()
	s, err := Load(dir)
	if err != nil {
		t.Fatalf("Load(%q): %v", dir, err)
	}
	return s
}

// copyDir copies the files (not subdirectories) of src into a new
// temporary directory and returns it.
func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		data, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dst, e.Name()), string(data))
	}
	return dst
}

// writeFile replaces path atomically (a dotfile renamed into place), as an
// operator should: a poller must never see a half-written policy.
func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// policyDir writes files (name → content) into a new temporary directory.
func policyDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		writeFile(t, filepath.Join(dir, name), content)
	}
	return dir
}

// withVersion replaces VERSION in want with the set's version.
func withVersion(want string, s *Set) string {
	return strings.ReplaceAll(want, "VERSION", s.Version())
}

// logBuffer collects log output from several goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
