package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestTCTIFor(t *testing.T) {
	tests := []struct {
		tpm, override, spec string
		rm                  bool
	}{
		{"/dev/tpmrm0", "", "device:/dev/tpmrm0", true},
		{"/dev/tpm0", "", "device:/dev/tpm0", false},
		{"swtpm:127.0.0.1:2321", "", "swtpm:host=127.0.0.1,port=2321", false},
		{"swtpm:127.0.0.1:2321", "tabrmd:bus_type=session,bus_name=com.intel.tss2.Tabrmd.t1", "tabrmd:bus_type=session,bus_name=com.intel.tss2.Tabrmd.t1", true},
	}
	for _, tt := range tests {
		got, err := TCTIFor(tt.tpm, tt.override)
		if err != nil || got.Spec != tt.spec || got.ResourceManager != tt.rm {
			t.Errorf("TCTIFor(%q, %q) = %+v, %v; want %s rm=%v", tt.tpm, tt.override, got, err, tt.spec, tt.rm)
		}
	}
	if _, err := TCTIFor("swtpm:nohost", ""); err == nil {
		t.Error("swtpm:nohost accepted")
	}
	swtpm, _ := TCTIFor("swtpm:127.0.0.1:2321", "")
	dev, _ := TCTIFor("/dev/tpm0", "")
	if !strings.Contains(swtpm.NoResourceManager(), "tpm2-abrmd") || !strings.Contains(dev.NoResourceManager(), "/dev/tpmrm0") {
		t.Errorf("advice: %q / %q", swtpm.NoResourceManager(), dev.NoResourceManager())
	}
}

// The configuration holds the three settings OpenSSL software needs
// (FIELD-NOTES), and the env file points at it.
func TestWriteOpenSSL(t *testing.T) {
	dir := t.TempDir()
	if err := WriteOpenSSL(dir, TCTI{Spec: "device:/dev/tpmrm0"}); err != nil {
		t.Fatal(err)
	}
	conf, _ := os.ReadFile(filepath.Join(dir, OpenSSLConfigFile))
	for _, want := range []string{"default_properties = ?provider=tpm2", "seed_properties = provider=default", "[tpm2_sect]\nactivate = 1", "[default_sect]\nactivate = 1"} {
		if !strings.Contains(string(conf), want) {
			t.Errorf("openssl.cnf lacks %q", want)
		}
	}
	env, _ := os.ReadFile(filepath.Join(dir, OpenSSLEnvFile))
	if want := "OPENSSL_CONF=" + filepath.Join(dir, OpenSSLConfigFile) + "\nTPM2OPENSSL_TCTI=device:/dev/tpmrm0\n"; string(env) != want {
		t.Errorf("openssl.env = %q, want %q", env, want)
	}
}
