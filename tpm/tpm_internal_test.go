package tpm

import (
	"bytes"
	"context"
	"crypto/rsa"
	"errors"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-attestation/attest"
	"github.com/google/go-tpm/tpm2"
	"github.com/sigil-dev/sigil/testenv"
)

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// transients counts the transient objects loaded in the TPM.
func transients(t *testing.T, tt *TPM) int {
	t.Helper()
	n := 0
	err := tt.do(ctxFor(t), "count", func() error {
		rsp, err := tpm2.GetCapability{Capability: tpm2.TPMCapHandles, Property: transientFirst, PropertyCount: 64}.Execute(tt.tr)
		if err != nil {
			return err
		}
		hs, err := rsp.CapabilityData.Data.Handles()
		n = len(hs.Handle)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestOpenFlushesLeftovers(t *testing.T) {
	t.Parallel()
	sw := testenv.SWTPM(t, testenv.SharedIdentity())
	crashed, err := Open(ctxFor(t), sw.Addr)
	if err != nil {
		t.Fatal(err)
	}
	ak, err := crashed.NewAK(ctxFor(t))
	if err != nil {
		t.Fatal(err)
	}
	// Load AK copies until the TPM is full, as a client that died would leave it.
	var loadErr error
	for loaded := 0; loadErr == nil; loaded++ {
		loadErr = crashed.do(ctxFor(t), "leak", func() error { _, err := crashed.loadRaw(ak.blob); return err })
		if loaded > 5 {
			t.Fatal("the swtpm holds more than 5 objects")
		}
	}
	if !errors.Is(loadErr, tpm2.TPMRCObjectMemory) {
		t.Fatalf("filling the TPM: %v, want TPM_RC_OBJECT_MEMORY", loadErr)
	}
	if n := transients(t, crashed); n == 0 {
		t.Fatal("no leftovers to flush")
	}
	crashed.ch.Close() // no Close: nothing flushed

	tt, err := Open(ctxFor(t), sw.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer tt.Close()
	if n := transients(t, tt); n != 0 {
		t.Fatalf("%d transient objects after Open, want 0", n)
	}
	ak, err = tt.LoadAK(ctxFor(t), ak.Marshal())
	if err != nil {
		t.Fatal(err)
	}
	key, err := ak.NewKey(ctxFor(t), []byte("nonce"))
	if err != nil {
		t.Fatalf("NewKey after Open: %v", err)
	}
	if err := key.Close(); err != nil {
		t.Fatal(err)
	}
	if n := transients(t, tt); n != 0 {
		t.Fatalf("%d transient objects after Key.Close, want 0", n)
	}
}

func TestContext(t *testing.T) {
	t.Parallel()
	sw := testenv.SWTPM(t, testenv.SharedIdentity())
	tt, err := Open(ctxFor(t), sw.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer tt.Close()

	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := tt.EKs(cancelled); !errors.Is(err, context.Canceled) || errors.Is(err, ErrBroken) {
		t.Fatalf("EKs with a cancelled context: %v, want context.Canceled only", err)
	}
	if _, err := tt.EKs(ctxFor(t)); err != nil {
		t.Fatalf("EKs after a cancelled call: %v", err)
	}

	// A TPM that stops answering: the deadline cuts the command off, and
	// the channel is broken for good.
	if err := syscall.Kill(sw.PID(), syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			_ = syscall.Kill(sw.PID(), syscall.SIGCONT)
		}
	}
	defer resume()
	short, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := tt.EKs(short); !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, ErrBroken) {
		t.Fatalf("EKs on a stopped TPM: %v, want deadline exceeded and ErrBroken", err)
	}
	resume()
	if _, err := tt.EKs(ctxFor(t)); !errors.Is(err, ErrBroken) {
		t.Fatalf("EKs after the break: %v, want ErrBroken", err)
	}
	if err := tt.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := tt.EKs(ctxFor(t)); !errors.Is(err, ErrClosed) {
		t.Fatalf("EKs after Close: %v, want ErrClosed", err)
	}
	again, err := Open(ctxFor(t), sw.Addr)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer again.Close()
	if _, err := again.EKs(ctxFor(t)); err != nil {
		t.Fatalf("EKs after reopening: %v", err)
	}
}

func TestOpenRejectsPaths(t *testing.T) {
	t.Parallel()
	for _, path := range []string{"", "tpmrm0", "swtpm:", "swtpm:127.0.0.1", "tcp:127.0.0.1:1"} {
		if tt, err := Open(ctxFor(t), path); err == nil {
			tt.Close()
			t.Errorf("Open(%q) succeeded", path)
		}
	}
}

// A TPM whose RSA EK is not persisted: EKs derives it from the standard
// template, and activation derives it again.
func TestDerivedEK(t *testing.T) {
	t.Parallel()
	sw := testenv.SWTPM(t, testenv.SharedIdentity())
	tt, err := Open(ctxFor(t), sw.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer tt.Close()
	err = tt.do(ctxFor(t), "evict ek", func() error {
		_, err := tpm2.EvictControl{
			Auth:             tpm2.TPMRHOwner,
			ObjectHandle:     &tpm2.NamedHandle{Handle: 0x81010001},
			PersistentHandle: 0x81010001,
		}.Execute(tt.tr)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	eks, err := tt.EKs(ctxFor(t))
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(eks, func(ek EK) bool { return ek.CertIndex == 0x01c00002 })
	if i < 0 {
		t.Fatal("no RSA EK")
	}
	ek := eks[i]
	if ek.Handle != 0 || !ek.Public.(*rsa.PublicKey).Equal(ek.Certificate.PublicKey) {
		t.Fatalf("derived RSA EK: handle %#x, matches certificate: %v", ek.Handle, ek.Public.(*rsa.PublicKey).Equal(ek.Certificate.PublicKey))
	}
	ak, err := tt.NewAK(ctxFor(t))
	if err != nil {
		t.Fatal(err)
	}
	secret, cred, err := (&attest.ActivationParameters{EK: ek.Public, AK: ak.AttestationParameters()}).Generate()
	if err != nil {
		t.Fatal(err)
	}
	got, err := ak.ActivateCredential(ctxFor(t), ek, *cred)
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("ActivateCredential with a derived EK: %x, %v", got, err)
	}
	if n := transients(t, tt); n != 0 {
		t.Errorf("%d transient objects left after activation", n)
	}
}
