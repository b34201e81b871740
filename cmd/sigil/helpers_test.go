package main_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/sigil-dev/sigil/audit"
)

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// buildCLI builds sigild and sigil once per test process.
func buildCLI(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		if binDir, buildErr = os.MkdirTemp("", "sigil-bin-"); buildErr != nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", binDir+"/", "./cmd/...", "./testenv/cmd/demoidp", "./examples/showcase")
		cmd.Dir = "../.."
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = errors.New(string(out))
		}
	})
	if buildErr != nil {
		t.Fatalf("build: %v", buildErr)
	}
	return binDir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// runBin runs bin/sigil with args and returns its output and exit code.
func runBin(t *testing.T, bin string, args ...string) (string, int) {
	t.Helper()
	out, err := exec.Command(filepath.Join(bin, "sigil"), args...).CombinedOutput()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		return string(out), exit.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return string(out), 0
}

// exportLog exports the stack's audit log to a new directory.
func exportLog(t *testing.T, s *stack) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "export")
	if out, code := s.run("sigild", "--config", filepath.Join(s.dir, "sigild.yaml"), "audit", "export", dir); code != 0 {
		t.Fatalf("export: %s", out)
	}
	return dir
}

// loggedEntries exports the audit log (through DIR/sigild.yaml) and
// returns its entries up to its checkpoint, decoded.
func loggedEntries(t *testing.T, s *stack) []audit.Entry {
	t.Helper()
	src := audit.DirSource(exportLog(t, s))
	note, err := src.Checkpoint(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	cp, err := audit.PeekCheckpoint(note)
	if err != nil {
		t.Fatal(err)
	}
	data, err := src.Entries(t.Context(), 0, cp.Size)
	if err != nil {
		t.Fatal(err)
	}
	entries := make([]audit.Entry, len(data))
	for i, d := range data {
		if entries[i], err = audit.Decode(d); err != nil {
			t.Fatal(err)
		}
	}
	return entries
}

func checkpointSize(t *testing.T, dir string) uint64 {
	t.Helper()
	cp, err := audit.PeekCheckpoint(readFileT(t, filepath.Join(dir, "checkpoint")))
	if err != nil {
		t.Fatal(err)
	}
	return cp.Size
}

func verifyDir(s *stack, dir, state string) (string, int) {
	return s.run("sigil", "audit", "verify", "--dir", dir, "--state", state)
}

// editEntries rewrites the export's first entries file line by line.
func editEntries(t *testing.T, dir string, edit func([]string) []string) {
	t.Helper()
	path := filepath.Join(dir, "entries", "0.jsonl")
	lines := strings.Split(strings.TrimSuffix(string(readFileT(t, path)), "\n"), "\n")
	writeFile(t, path, strings.Join(edit(lines), "\n")+"\n")
}

// softSigner is a checkpoint signer with a software key (named by name,
// or if empty the default origin of its key in sigil.test): another key than
// the log's, or the key of a log the test builds.
func softSigner(t *testing.T, name string) (*audit.Signer, crypto.PublicKey) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if name == "" {
		if name, err = audit.Origin("sigil.test", k.Public()); err != nil {
			t.Fatal(err)
		}
	}
	s, err := audit.NewSigner(name, k)
	if err != nil {
		t.Fatal(err)
	}
	return s, k.Public()
}

func writePublicKey(t *testing.T, path string, pub crypto.PublicKey) {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})))
}

func readFileT(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func copyFile(t testing.TB, from, to string) {
	t.Helper()
	writeFile(t, to, string(readFileT(t, from)))
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	if err := os.CopyFS(to, os.DirFS(from)); err != nil {
		t.Fatal(err)
	}
}

func hexSum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
