package main_test

import (
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// sigil is installed on every workload host: it links no PKCS#11, no SQL
// driver and no CA. The operator commands that need them are sigild's.
func TestLinksNoServerCode(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	forbidden := regexp.MustCompile(`crypto11|pkcs11|sqlite|database/sql|pgx|smallstep/certificates|sigil/hsm$|sigil/internal/(store|daemon|config)`)
	for _, pkg := range strings.Fields(string(out)) {
		if forbidden.MatchString(pkg) {
			t.Errorf("sigil links %s", pkg)
		}
	}
}
