package main_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/testenv"
)

// TestManyWorkloadsOneTPM is the scenario of issue 16 as a user meets it:
// two services enrolled on one TPM both renew (they share the host's AK);
// an enrollment with another AK (another host state) is refused with what
// to do; replacing the AK explicitly is audited, the services of the host
// state renew with the new AK by themselves, and one whose state keeps the
// old AK is told that the AK was replaced and how to recover.
func TestManyWorkloadsOneTPM(t *testing.T) {
	s := startStack(t, "1")
	addr, eventLog := s.tpm(0)
	enroll := func(name string, extra ...string) (string, int) {
		args := append([]string{"enroll", "--tpm", addr, "--event-log", eventLog,
			"--identity", "spiffe://sigil.test/workload/" + name, "--state", filepath.Join(s.dir, name)}, extra...)
		return s.run("sigil", args...)
	}
	renew := func(name string) (string, int) { return s.run("sigil", "renew", "--state", filepath.Join(s.dir, name)) }
	for _, name := range []string{"orders", "payments"} {
		if out, code := enroll(name); code != 0 {
			t.Fatalf("enroll %s: exit %d\n%s", name, code, out)
		}
	}
	for _, name := range []string{"orders", "payments"} {
		if out, code := renew(name); code != 0 {
			t.Fatalf("renew %s after both enrolled on one TPM: exit %d\n%s", name, code, out)
		}
	}
	hosts, _ := filepath.Glob(filepath.Join(s.env["SIGIL_HOST_STATE"], "*", "ak.blob"))
	if len(hosts) != 1 {
		t.Fatalf("host state holds %d AKs (%v), want the TPM's one", len(hosts), hosts)
	}
	for _, name := range []string{"orders", "payments"} {
		if _, err := os.Stat(filepath.Join(s.dir, name, "ak.blob")); !os.IsNotExist(err) {
			t.Errorf("%s's state keeps an AK of its own (%v); it must use the host's", name, err)
		}
	}

	other := filepath.Join(s.dir, "other-host-state")
	out, code := enroll("reports", "--host-state", other)
	if code == 0 || !strings.Contains(out, "bound to another attestation key") || !strings.Contains(out, "--replace-ak") {
		t.Fatalf("enroll with another host state's AK: exit %d, want a refusal naming --replace-ak\n%s", code, out)
	}
	out, code = enroll("reports", "--host-state", other, "--replace-ak")
	if code != 0 {
		t.Fatalf("enroll --replace-ak: exit %d\n%s", code, out)
	}
	testenv.WaitFor(t, 30*time.Second, "the AK replacement to be logged with the identities it affects", func() bool {
		for _, e := range loggedEntries(t, s) {
			if e.Kind == "device.ak_replaced" && strings.Contains(string(e.Data), `"affected":["spiffe://sigil.test/workload/orders","spiffe://sigil.test/workload/payments"]`) {
				return true
			}
		}
		return false
	})
	// orders and payments quote with the AK of SIGIL_HOST_STATE, which is
	// now the old one: told so, and what to do.
	out, code = renew("orders")
	if code == 0 || !strings.Contains(out, "attestation key was replaced") || !strings.Contains(out, "--host-state") {
		t.Fatalf("renew with the replaced AK: exit %d, want the replacement named with what to do\n%s", code, out)
	}
	// The same host state now holds the new AK: a replacement there moves
	// every workload of the host state along.
	out, code = enroll("reports2", "--replace-ak")
	if code != 0 {
		t.Fatalf("enroll --replace-ak in the shared host state: exit %d\n%s", code, out)
	}
	for _, name := range []string{"orders", "payments", "reports2"} {
		if out, code := renew(name); code != 0 {
			t.Fatalf("renew %s with the host's new AK: exit %d\n%s", name, code, out)
		}
	}
}
