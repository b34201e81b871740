// Package atomicfile replaces files whole: a reader sees the old content or
// the new, never a part, and after a crash the new content is on disk or the
// file is unchanged.
package atomicfile

import (
	"os"
	"path/filepath"
)

// Write replaces path with data, mode 0600.
func Write(path string, data []byte) error { return WriteMode(path, data, 0o600) }

// WriteMode replaces path with data and mode perm: a temporary file in the
// same directory, synced, renamed over path, and the directory synced so
// the rename survives a crash.
func WriteMode(path string, data []byte, perm os.FileMode) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = os.Remove(f.Name())
		}
	}()
	if _, err = f.Write(data); err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), perm)
	}
	if err != nil {
		return err
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return err
	}
	return syncDir(dir)
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
