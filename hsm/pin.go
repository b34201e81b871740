package hsm

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
)

// maxPINFile bounds what is read from a PIN file.
const maxPINFile = 1024

// resolvePIN returns the user PIN from the URI's pin-source file or from the
// environment variable named by WithPINEnv — exactly one must provide it.
// Errors name the source, never the PIN.
func resolvePIN(u *URI, o *options) (string, error) {
	env := ""
	if o.pinEnv != "" {
		env = os.Getenv(o.pinEnv)
	}
	switch {
	case u.PINSource != "" && env != "":
		return "", fmt.Errorf("hsm: PIN given twice: both pin-source and $%s are set; keep one", o.pinEnv)
	case u.PINSource != "":
		return readPINFile(u.PINSource, o.logger)
	case env != "":
		return env, nil
	case o.pinEnv != "":
		return "", fmt.Errorf("hsm: no PIN: the URI has no pin-source and $%s is empty", o.pinEnv)
	}
	return "", errors.New("hsm: no PIN: add pin-source=file:/path to the URI or use WithPINEnv")
}

// readPINFile reads a PIN file, dropping one trailing newline. It warns if the
// file is readable by group or others.
func readPINFile(path string, log *slog.Logger) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("hsm: read PIN file: %w", err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Mode().Perm()&0o077 != 0 {
		log.Warn("hsm: PIN file is readable by group or others; chmod 600 it", "path", path)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxPINFile+1))
	if err != nil {
		return "", fmt.Errorf("hsm: read PIN file %s: %w", path, err)
	}
	return checkPIN(path, b)
}

func checkPIN(path string, b []byte) (string, error) {
	if len(b) > maxPINFile {
		return "", fmt.Errorf("hsm: PIN file %s: longer than %d bytes", path, maxPINFile)
	}
	pin := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	if pin == "" {
		return "", fmt.Errorf("hsm: PIN file %s is empty", path)
	}
	return pin, nil
}
