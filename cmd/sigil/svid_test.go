package main

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"

	"github.com/sigil-dev/sigil/client"
	"github.com/sigil-dev/sigil/internal/agent"
)

// TestWriteSVIDNames: sigil svid --out writes the files under sigil
// agent's names; a key under the old name, where a user has one, is kept
// up to date (unless it is a symbolic link), and none is created.
func TestWriteSVIDNames(t *testing.T) {
	t.Parallel()
	st := &client.State{Chain: []*x509.Certificate{{Raw: []byte("leaf")}}}
	read := func(dir, name string) string {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	fresh := t.TempDir()
	if old, err := writeSVID(fresh, st, []byte("key 1")); err != nil || old {
		t.Fatalf("writeSVID = %v, %v; want no old key, nil", old, err)
	}
	if got := read(fresh, agent.KeyFile); got != "key 1" {
		t.Fatalf("%s = %q", agent.KeyFile, got)
	}
	read(fresh, agent.ChainFile)
	read(fresh, agent.BundleFile)
	if _, err := os.Stat(filepath.Join(fresh, oldKeyFile)); err == nil {
		t.Fatalf("%s created", oldKeyFile)
	}

	upgraded := t.TempDir()
	if err := os.WriteFile(filepath.Join(upgraded, oldKeyFile), []byte("stale"), 0o600); err != nil {
		t.Fatal(err)
	}
	if old, err := writeSVID(upgraded, st, []byte("key 2")); err != nil || !old {
		t.Fatalf("writeSVID = %v, %v; want the old key found, nil", old, err)
	}
	for _, name := range []string{oldKeyFile, agent.KeyFile} {
		if got := read(upgraded, name); got != "key 2" {
			t.Errorf("%s = %q, want the new key", name, got)
		}
	}

	linked := t.TempDir()
	if err := os.Symlink(agent.KeyFile, filepath.Join(linked, oldKeyFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := writeSVID(linked, st, []byte("key 3")); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(filepath.Join(linked, oldKeyFile)); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("the link %s was replaced (%v)", oldKeyFile, err)
	}
	if got := read(linked, oldKeyFile); got != "key 3" {
		t.Fatalf("%s through its link = %q", oldKeyFile, got)
	}
}
