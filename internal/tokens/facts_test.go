package tokens_test

import (
	"crypto/x509"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/attest"
	"github.com/sigil-dev/sigil/ca"
	"github.com/sigil-dev/sigil/internal/tokens"
	"github.com/sigil-dev/sigil/internal/tokens/tokenstest"
)

// Policy sees the facts of the device the caller's certificate was issued
// on, re-derived from the recorded evidence: a forbid on the device's EK
// and Secure Boot state denies its workloads.
func TestPolicySeesDeviceFacts(t *testing.T) {
	t.Parallel()
	e := tokenstest.New(t)
	forbid := `@id("quarantine-device")
forbid (principal is Sigil::Workload, action, resource)
when { principal.device.secure_boot && principal.device.ek_hash == "sha256:` + hex.EncodeToString(e.Evidence().EKHash) + `" };
`
	cfg := e.Config
	cfg.Policy = policyWith(t, forbid)
	svc := e.Start(t, cfg)
	a, b := e.Workload(t, "a"), e.Workload(t, "b")
	_, err := svc.Token(t.Context(), a.Cert, cc(b.ID))
	if oe := oauthErr(t, err); oe.Code != tokens.AccessDenied || !strings.Contains(oe.Error(), `"quarantine-device"`) {
		t.Errorf("Token = %v, want access_denied by quarantine-device", err)
	}
	if _, err := e.Service.Token(t.Context(), a.Cert, cc(b.ID)); err != nil {
		t.Errorf("without the forbid: %v", err)
	}
}

// A caller whose evidence no longer verifies (its EK CA is no longer
// trusted) is denied, whatever policy says.
func TestEvidenceNoLongerVerifies(t *testing.T) {
	t.Parallel()
	e := tokenstest.New(t)
	root, err := ca.NewRoot(newKey(t), "another EK CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cfg := e.Config
	if cfg.Attest, err = attest.NewVerifier(attest.Config{EKRoots: []*x509.Certificate{root}, PCRs: []int{0, 7}}); err != nil {
		t.Fatal(err)
	}
	svc := e.Start(t, cfg)
	a, b := e.Workload(t, "a"), e.Workload(t, "b")
	_, err = svc.Token(t.Context(), a.Cert, cc(b.ID))
	if oe := oauthErr(t, err); oe.Code != tokens.AccessDenied || !strings.Contains(oe.Description, "no longer verifies") {
		t.Errorf("Token = %v, want access_denied: evidence no longer verifies", err)
	}
}
