package hsm_test

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sigil-dev/sigil/hsm"
	"github.com/sigil-dev/sigil/testenv"
)

func TestSignVerifyEveryAlgorithm(t *testing.T) {
	t.Parallel()
	tok := testenv.SoftHSM(t)
	h := open(t, tok.URI)
	for _, alg := range []hsm.Alg{hsm.ES256, hsm.ES384, hsm.PS256} {
		t.Run(string(alg), func(t *testing.T) {
			t.Parallel()
			k := generate(t, h, "sig-"+strings.ToLower(string(alg)), alg)
			if k.Alg() != alg {
				t.Fatalf("Alg() = %s, want %s", k.Alg(), alg)
			}
			for i := range 3 {
				if err := signVerify(t, k, alg, fmt.Sprint("message ", i)); err != nil {
					t.Fatalf("sign/verify %d: %v", i, err)
				}
			}
			if alg == hsm.PS256 { // one RSA key per run: SoftHSM takes seconds to make one
				checkPSSOptions(t, k)
			}
		})
	}
}

// checkPSSOptions covers the PSS salt lengths callers pass (go-jose and
// crypto/x509: EqualsHash; some libraries: Auto or 32) and refuses PKCS#1
// v1.5, other hashes and other salt lengths.
func checkPSSOptions(t *testing.T, k *hsm.Key) {
	d := digest(hsm.PS256, "pss")
	pub := k.Public().(*rsa.PublicKey)
	for _, salt := range []int{rsa.PSSSaltLengthEqualsHash, rsa.PSSSaltLengthAuto, 32} {
		sig, err := k.Sign(nil, d, &rsa.PSSOptions{SaltLength: salt, Hash: crypto.SHA256})
		if err != nil {
			t.Fatalf("salt %d: %v", salt, err)
		}
		if err := rsa.VerifyPSS(pub, crypto.SHA256, d, sig, &rsa.PSSOptions{SaltLength: 32}); err != nil {
			t.Fatalf("salt %d: verify with salt 32: %v", salt, err)
		}
	}
	for name, opts := range map[string]crypto.SignerOpts{
		"pkcs1v15":  crypto.SHA256,
		"sha384":    &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA384},
		"salt-20":   &rsa.PSSOptions{SaltLength: 20, Hash: crypto.SHA256},
		"nil-opts":  nil,
		"wrong-len": &rsa.PSSOptions{Hash: crypto.SHA256},
	} {
		dd := d
		if name == "wrong-len" {
			dd = d[:20]
		}
		if _, err := k.Sign(nil, dd, opts); err == nil || errors.Is(err, hsm.ErrUnavailable) {
			t.Errorf("%s: Sign error = %v, want a refusal", name, err)
		}
	}
}

func TestECDSARefusesOtherHashes(t *testing.T) {
	t.Parallel()
	h := open(t, testenv.SoftHSM(t).URI)
	k := generate(t, h, "ec", hsm.ES384)
	d := sha256.Sum256([]byte("x"))
	_, err := k.Sign(nil, d[:], crypto.SHA256)
	if err == nil || !strings.Contains(err.Error(), "ES384 key signs SHA-384 digests only") {
		t.Fatalf("Sign with SHA-256 on ES384 key: %v", err)
	}
}

func TestConcurrentSigning(t *testing.T) {
	t.Parallel()
	// Generous bounds: this checks concurrency, not latency, and SoftHSM
	// stalls for hundreds of ms while another test makes an RSA key.
	h := open(t, testenv.SoftHSM(t).URI, hsm.WithSessions(8, 20*time.Second), hsm.WithTimeout(30*time.Second))
	k := generate(t, h, "busy", hsm.ES256)
	const goroutines, each = 64, 8
	var wg sync.WaitGroup
	errs := make(chan error, goroutines*each)
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				errs <- signVerify(t, k, hsm.ES256, fmt.Sprint(g, "/", i))
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestOpenAndFindErrorsAreDistinct(t *testing.T) {
	t.Parallel()
	tok := testenv.SoftHSM(t)
	wrongPIN := filepath.Join(t.TempDir(), "wrong-pin")
	if err := os.WriteFile(wrongPIN, []byte("not-"+tok.PIN), 0o600); err != nil {
		t.Fatal(err)
	}
	badPINURI := hsm.URI{Token: tok.Label, ModulePath: tok.Module, PINSource: wrongPIN}
	noTokenURI := hsm.URI{Token: "no-such-token", ModulePath: tok.Module, PINSource: tok.PINFile}
	sentinels := []error{hsm.ErrBadPIN, hsm.ErrTokenNotFound, hsm.ErrKeyNotFound, hsm.ErrUnavailable}

	_, badPIN := hsm.Open(t.Context(), badPINURI.String())
	_, noToken := hsm.Open(t.Context(), noTokenURI.String())
	h := open(t, tok.URI)
	_, noKey := h.Find(t.Context(), "absent")

	for _, tc := range []struct {
		name string
		err  error
		want error
	}{
		{"wrong-pin", badPIN, hsm.ErrBadPIN},
		{"missing-token", noToken, hsm.ErrTokenNotFound},
		{"missing-key", noKey, hsm.ErrKeyNotFound},
	} {
		for _, s := range sentinels {
			if got := errors.Is(tc.err, s); got != (s == tc.want) {
				t.Errorf("%s: errors.Is(%v, %v) = %v", tc.name, tc.err, s, got)
			}
		}
		if strings.Contains(tc.err.Error(), tok.PIN) {
			t.Errorf("%s: error contains the PIN: %v", tc.name, tc.err)
		}
	}
}

func TestOpenRefusesMissingModule(t *testing.T) {
	t.Parallel()
	tok := testenv.SoftHSM(t)
	u := hsm.URI{Token: tok.Label, ModulePath: "/nonexistent/libpkcs11.so", PINSource: tok.PINFile}
	_, err := hsm.Open(t.Context(), u.String())
	if err == nil || errors.Is(err, hsm.ErrUnavailable) || !strings.Contains(err.Error(), "/nonexistent/libpkcs11.so") {
		t.Fatalf("Open with a missing module: %v", err)
	}
}

// TestPINFromEnvironment is not parallel: it uses t.Setenv.
func TestPINFromEnvironment(t *testing.T) {
	tok := testenv.SoftHSM(t)
	noSource := hsm.URI{Token: tok.Label, ModulePath: tok.Module}
	t.Setenv("SIGIL_TEST_HSM_PIN", tok.PIN)
	h := open(t, noSource.String(), hsm.WithPINEnv("SIGIL_TEST_HSM_PIN"))
	if err := h.Healthy(t.Context()); err != nil {
		t.Fatalf("Healthy: %v", err)
	}
	_, err := hsm.Open(t.Context(), tok.URI, hsm.WithPINEnv("SIGIL_TEST_HSM_PIN"))
	if err == nil || !strings.Contains(err.Error(), "PIN given twice") {
		t.Fatalf("Open with pin-source and $SIGIL_TEST_HSM_PIN: %v", err)
	}
	_, err = hsm.Open(t.Context(), noSource.String(), hsm.WithPINEnv("SIGIL_TEST_HSM_UNSET"))
	if err == nil || !strings.Contains(err.Error(), "$SIGIL_TEST_HSM_UNSET is empty") {
		t.Fatalf("Open with an empty PIN variable: %v", err)
	}
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	h := open(t, testenv.SoftHSM(t).URI, hsm.WithMetrics(reg))
	k := generate(t, h, "metered", hsm.ES256)
	for range 3 {
		if err := signVerify(t, k, hsm.ES256, "m"); err != nil {
			t.Fatal(err)
		}
	}
	_, _ = k.Sign(nil, []byte("short"), crypto.SHA256)
	ok := counter(t, reg, "sigil_hsm_sign_operations_total", map[string]string{"alg": "ES256", "result": "ok"})
	bad := counter(t, reg, "sigil_hsm_sign_operations_total", map[string]string{"alg": "ES256", "result": "error"})
	if ok != 3 || bad != 1 {
		t.Fatalf("sign counters ok=%v error=%v, want 3 and 1", ok, bad)
	}
	if _, err := hsm.Open(t.Context(), testenv.SoftHSM(t).URI, hsm.WithMetrics(reg)); err == nil {
		t.Fatal("second handle on the same registerer: want a registration error")
	}
}

func TestClosedHandle(t *testing.T) {
	t.Parallel()
	tok := testenv.SoftHSM(t)
	h, err := hsm.Open(t.Context(), tok.URI, hsm.WithTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	k := generate(t, h, "closing", hsm.ES256)
	for range 2 { // Close is idempotent
		if err := h.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if err := signVerify(t, k, hsm.ES256, "after close"); err == nil || !strings.Contains(err.Error(), "handle closed") {
		t.Fatalf("Sign after Close: %v", err)
	}
}
