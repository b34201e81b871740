package testenv

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// InstallABRMD says how to get what ResourceManager runs.
const InstallABRMD = "apt-get install tpm2-abrmd libtss2-tcti-tabrmd0 dbus tpm2-tools (or run make deps)"

// ResourceManager starts a private D-Bus session bus and tpm2-abrmd on it
// in front of the swtpm at swtpmTCTI (TPM.TCTI()), as OpenSSL software
// with a TSS2 key needs (FIELD-NOTES: without a resource manager
// tpm2-openssl fails with "cannot duplicate context"). It returns the
// environment for tpm2-openssl and tpm2-tools: DBUS_SESSION_BUS_ADDRESS,
// TPM2OPENSSL_TCTI and TPM2TOOLS_TCTI. tpm2-abrmd holds the swtpm's one
// connection until the test's cleanup stops both.
func ResourceManager(t testing.TB, swtpmTCTI string) []string {
	t.Helper()
	for _, tool := range []string{"dbus-daemon", "tpm2-abrmd", "tpm2_getrandom"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("testenv: %s not found: %s", tool, InstallABRMD)
		}
	}
	dir, err := os.MkdirTemp("", "abrmd-") // short: a socket path
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	bus := "unix:path=" + filepath.Join(dir, "bus")
	daemon(t, dir, "dbus", nil, "dbus-daemon", "--session", "--nofork", "--nopidfile", "--address="+bus)
	name := "com.intel.tss2.Tabrmd.sigil" + randHex(4)
	env := []string{"DBUS_SESSION_BUS_ADDRESS=" + bus}
	// The bus answers once its socket exists.
	WaitFor(t, 10*time.Second, "dbus-daemon's socket", func() bool {
		_, err := os.Stat(filepath.Join(dir, "bus"))
		return err == nil
	})
	daemon(t, dir, "abrmd", env, "tpm2-abrmd", "--session", "--allow-root", "--dbus-name="+name, "--tcti="+swtpmTCTI)
	tcti := "tabrmd:bus_type=session,bus_name=" + name
	env = append(env, "TPM2OPENSSL_TCTI="+tcti, "TPM2TOOLS_TCTI="+tcti)
	WaitForNil(t, 15*time.Second, "tpm2-abrmd to answer", func() error {
		cmd := exec.Command("tpm2_getrandom", "--hex", "4")
		cmd.Env = append(os.Environ(), env...)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("tpm2_getrandom: %v: %s; abrmd log: %s", err, lastLine(out), readTail(filepath.Join(dir, "abrmd.log")))
		}
		return nil
	})
	return env
}

// daemon starts a process logging to dir/name.log, killed (SIGTERM, then
// SIGKILL) by the test's cleanup and when the test process dies.
func daemon(t testing.TB, dir, name string, env []string, prog string, args ...string) {
	t.Helper()
	logf, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(prog, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("testenv: %s: %v", prog, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
}

func lastLine(b []byte) string {
	var last string
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		if s := strings.TrimSpace(sc.Text()); s != "" {
			last = s
		}
	}
	return last
}

func readTail(path string) string {
	b, _ := os.ReadFile(path)
	return tail(b, 500)
}
