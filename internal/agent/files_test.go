package agent

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"

	"github.com/sigil-dev/sigil/client"
	"github.com/sigil-dev/sigil/tpm"
)

func TestWriteFiles(t *testing.T) {
	state, out := t.TempDir(), filepath.Join(t.TempDir(), "out")
	key := "-----BEGIN TSS2 PRIVATE KEY-----\nAAAA\n-----END TSS2 PRIVATE KEY-----\n"
	os.WriteFile(filepath.Join(state, tpm.KeyPEMFile), []byte(key), 0o600)
	os.WriteFile(filepath.Join(state, client.BundleFile), []byte("bundle\n"), 0o600)
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(7)}, &x509.Certificate{SerialNumber: big.NewInt(1)}, k.Public(), k)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	st := &client.State{Chain: []*x509.Certificate{leaf, leaf}}
	for range 2 { // the second replaces the first's files
		if err := WriteFiles(out, state, st); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]struct {
		content string
		mode    os.FileMode
	}{
		KeyFile:    {key, 0o600},
		BundleFile: {"bundle\n", 0o644},
		ChainFile:  {string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})) + string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})), 0o644},
	}
	entries, _ := os.ReadDir(out)
	if len(entries) != len(want) {
		t.Errorf("out holds %d files, want %d (no temporary file left)", len(entries), len(want))
	}
	for name, w := range want {
		fi, err := os.Stat(filepath.Join(out, name))
		data, _ := os.ReadFile(filepath.Join(out, name))
		if err != nil || fi.Mode().Perm() != w.mode || string(data) != w.content {
			t.Errorf("%s: mode %v, %q, %v; want %v %q", name, fi.Mode().Perm(), data, err, w.mode, w.content)
		}
	}
	os.Remove(filepath.Join(state, tpm.KeyPEMFile))
	if err := WriteFiles(out, state, st); err == nil {
		t.Error("no TSS2 key in the state: no error")
	}
}
