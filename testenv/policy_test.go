package testenv_test

import (
	"crypto"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"regexp"
	"strconv"
	"testing"

	"github.com/sigil-dev/sigil/policy"
	"github.com/sigil-dev/sigil/testenv"
)

// The dev stack's policy pins PCR values; they must be what the synthetic
// dev boot produces, and the debug boot must carry the marker the policy
// forbids.
func TestDevPolicyMatchesDevMeasurements(t *testing.T) {
	src, err := os.ReadFile("policy/enroll.cedar")
	if err != nil {
		t.Fatal(err)
	}
	pins := regexp.MustCompile(`"sha256:(\d+):([0-9a-f]{64})"`).FindAllStringSubmatch(string(src), -1)
	if len(pins) == 0 {
		t.Fatal("the dev policy pins no PCR")
	}
	dev := testenv.DevMeasurements().PCRs(crypto.SHA256)
	for _, p := range pins {
		i, _ := strconv.Atoi(p[1])
		if got := hex.EncodeToString(dev[i]); got != p[2] {
			t.Errorf("policy pins PCR %d = %s, the dev boot gives %s", i, p[2], got)
		}
	}
	marker := sha256.Sum256([]byte("debug-firmware"))
	found := false
	for _, e := range testenv.DebugMeasurements().Events {
		found = found || (e.Measured == nil && string(e.Data) == "debug-firmware")
	}
	if !found || !regexp.MustCompile(hex.EncodeToString(marker[:])).Match(src) {
		t.Error("the debug boot's marker and the policy's forbid do not agree")
	}
}

func TestDevPolicyTests(t *testing.T) {
	report, err := policy.RunTests("policy")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range report.Failures() {
		t.Errorf("%s: %s: %s", f.File, f.Case, f.Failure)
	}
}

// The option ROM boot enrolls under the dev policy (its pinned PCRs are
// the dev boot's) and measures the event whose digest is OptionROMDigest.
func TestOptionROMMeasurements(t *testing.T) {
	dev, rom := testenv.DevMeasurements().PCRs(crypto.SHA256), testenv.OptionROMMeasurements().PCRs(crypto.SHA256)
	for _, i := range []int{0, 4, 7} {
		if hex.EncodeToString(dev[i]) != hex.EncodeToString(rom[i]) {
			t.Errorf("PCR %d differs from the dev boot's: the dev policy would refuse the machine", i)
		}
	}
	if hex.EncodeToString(dev[2]) == hex.EncodeToString(rom[2]) {
		t.Error("PCR 2 does not show the option ROM")
	}
	found := false
	for _, e := range testenv.OptionROMMeasurements().Events {
		sum := sha256.Sum256(e.Data)
		found = found || (e.PCR == 2 && e.Measured == nil && "sha256:"+hex.EncodeToString(sum[:]) == testenv.OptionROMDigest)
	}
	if !found {
		t.Errorf("no PCR 2 event has the digest %s", testenv.OptionROMDigest)
	}
}
