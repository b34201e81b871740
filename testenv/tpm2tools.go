package testenv

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// InstallTPM2Tools says how to get tpm2-tools.
const InstallTPM2Tools = "apt-get install tpm2-tools (or run make test)"

// CheckQuote runs tpm2-tools' tpm2_checkquote on the files a
// `sigil audit evidence` wrote into dir (ak.pub, quote.msg, quote.sig,
// pcrs.bin, nonce.hex), over the SHA-256 bank, and returns its output and
// whether it accepted the quote. It fails the test when tpm2_checkquote
// is missing or cannot be run.
func CheckQuote(t testing.TB, dir string) (string, bool) {
	t.Helper()
	if _, err := exec.LookPath("tpm2_checkquote"); err != nil {
		t.Fatalf("testenv: tpm2_checkquote not found: %s", InstallTPM2Tools)
	}
	nonce, err := os.ReadFile(filepath.Join(dir, "nonce.hex"))
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	in := func(name string) string { return filepath.Join(dir, name) }
	out, err := exec.Command("tpm2_checkquote", "-u", in("ak.pub"), "-m", in("quote.msg"), "-s", in("quote.sig"),
		"-f", in("pcrs.bin"), "-g", "sha256", "-q", strings.TrimSpace(string(nonce))).CombinedOutput()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		return string(out), false
	case err != nil:
		t.Fatalf("testenv: tpm2_checkquote: %v", err)
	}
	return string(out), true
}
