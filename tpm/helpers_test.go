package tpm_test

import (
	"context"
	"crypto/rand"
	"testing"
	"time"

	"github.com/google/go-attestation/attest"
	"github.com/sigil-dev/sigil/testenv"
	"github.com/sigil-dev/sigil/tpm"
)

// testCtx bounds one test's TPM work.
func testCtx(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// sharedTPM starts a swtpm for a test that does not care which TPM it is: a
// copy of one provisioned per process (same EKs and SRK), much cheaper than
// a TPM of its own.
func sharedTPM(t testing.TB) *testenv.TPM {
	t.Helper()
	return testenv.SWTPM(t, testenv.SharedIdentity())
}

// bootedTPM starts a swtpm, runs the dev measured boot on it and opens it with
// the event log.
func bootedTPM(t testing.TB) (*testenv.TPM, *tpm.TPM) {
	t.Helper()
	sw := sharedTPM(t)
	testenv.Boot(t, sw, testenv.DevMeasurements())
	return sw, open(t, sw)
}

// open opens the swtpm and closes it when the test ends.
func open(t testing.TB, sw *testenv.TPM, opts ...tpm.Option) *tpm.TPM {
	t.Helper()
	opts = append([]tpm.Option{tpm.WithEventLog(sw.EventLogPath)}, opts...)
	tt, err := tpm.Open(testCtx(t), sw.Addr, opts...)
	if err != nil {
		t.Fatalf("Open(%s): %v", sw.Addr, err)
	}
	t.Cleanup(func() {
		if err := tt.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return tt
}

func newAK(t testing.TB, tt *tpm.TPM, opts ...tpm.AKOption) *tpm.AK {
	t.Helper()
	ak, err := tt.NewAK(testCtx(t), opts...)
	if err != nil {
		t.Fatalf("NewAK: %v", err)
	}
	return ak
}

func newKey(t testing.TB, ak *tpm.AK, qualifyingData []byte) *tpm.Key {
	t.Helper()
	key, err := ak.NewKey(testCtx(t), qualifyingData)
	if err != nil {
		t.Fatalf("NewKey: %v", err)
	}
	t.Cleanup(func() {
		if err := key.Close(); err != nil {
			t.Errorf("Key.Close: %v", err)
		}
	})
	return key
}

func nonce(t testing.TB) []byte {
	t.Helper()
	n := make([]byte, 32)
	if _, err := rand.Read(n); err != nil {
		t.Fatal(err)
	}
	return n
}

// ekOf returns the EK of the TPM whose public key has type T.
func ekOf[T any](t testing.TB, tt *tpm.TPM) tpm.EK {
	t.Helper()
	eks, err := tt.EKs(testCtx(t))
	if err != nil {
		t.Fatalf("EKs: %v", err)
	}
	for _, ek := range eks {
		if _, ok := ek.Public.(T); ok {
			return ek
		}
	}
	var zero T
	t.Fatalf("no %T EK among %d", zero, len(eks))
	return tpm.EK{}
}

// verifyQuote verifies p as a verifier would: every quote with the AK and
// nonce, and every PCR covered.
func verifyQuote(p *attest.PlatformParameters, nonce []byte) error {
	pub, err := attest.ParseAKPublic(p.Public)
	if err != nil {
		return err
	}
	pcrs := append([]attest.PCR(nil), p.PCRs...)
	return pub.VerifyAll(p.Quotes, pcrs, nonce)
}
