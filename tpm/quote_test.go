package tpm_test

import (
	"bytes"
	"crypto"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-attestation/attest"
	"github.com/sigil-dev/sigil/testenv"
	"github.com/sigil-dev/sigil/tpm"
)

func TestQuote(t *testing.T) {
	t.Parallel()
	_, tt := bootedTPM(t)
	for _, alg := range []attest.Algorithm{attest.ECDSA, attest.RSA} {
		t.Run(string(alg), func(t *testing.T) {
			ak := newAK(t, tt, tpm.AKAlgorithm(alg))
			n := nonce(t)
			p, err := ak.Quote(testCtx(t), n)
			if err != nil {
				t.Fatalf("Quote: %v", err)
			}
			if len(p.Quotes) != 2 || len(p.PCRs) != 48 {
				t.Fatalf("%d quotes over %d PCRs, want 2 banks of 24", len(p.Quotes), len(p.PCRs))
			}
			if !bytes.Equal(p.Public, ak.AttestationParameters().Public) {
				t.Error("quote names another AK")
			}
			if err := verifyQuote(p, n); err != nil {
				t.Errorf("VerifyAll: %v", err)
			}
			if err := verifyQuote(p, nonce(t)); err == nil {
				t.Error("quote verifies with another nonce")
			}
			partial := *p
			partial.Quotes = p.Quotes[:1]
			if err := verifyQuote(&partial, n); err == nil || !strings.Contains(err.Error(), "not covered") {
				t.Errorf("PCRs without their quote: err %v, want not covered", err)
			}
			other := newAK(t, tt)
			forged := *p
			forged.Public = other.AttestationParameters().Public
			if err := verifyQuote(&forged, n); err == nil {
				t.Error("quote verifies with another AK")
			}
		})
	}
}

func TestQuoteBank(t *testing.T) {
	t.Parallel()
	_, tt := bootedTPM(t)
	ak := newAK(t, tt)
	n := nonce(t)
	p, err := ak.Quote(testCtx(t), n, attest.HashSHA256)
	if err != nil {
		t.Fatalf("Quote: %v", err)
	}
	if len(p.Quotes) != 1 || len(p.PCRs) != 24 || p.PCRs[0].DigestAlg != crypto.SHA256 {
		t.Fatalf("%d quotes over %d PCRs, want 1 over 24 SHA-256 PCRs", len(p.Quotes), len(p.PCRs))
	}
	if err := verifyQuote(p, n); err != nil {
		t.Errorf("VerifyAll: %v", err)
	}
	if _, err := ak.Quote(testCtx(t), nil); err == nil {
		t.Error("quote with an empty nonce")
	}
}

func TestEventLogReplay(t *testing.T) {
	t.Parallel()
	boot := testenv.DevMeasurements()
	_, tt := bootedTPM(t)
	ak := newAK(t, tt)
	n := nonce(t)
	p, err := ak.Quote(testCtx(t), n)
	if err != nil {
		t.Fatalf("Quote: %v", err)
	}
	if err := verifyQuote(p, n); err != nil {
		t.Fatalf("VerifyAll: %v", err)
	}
	events := replay(t, p.EventLog, p.PCRs)
	if sb, err := attest.ParseSecurebootState(events); err != nil || !sb.Enabled {
		t.Errorf("ParseSecurebootState: %+v, %v; want enabled", sb, err)
	}
	for _, h := range []crypto.Hash{crypto.SHA1, crypto.SHA256} {
		for pcr, want := range boot.PCRs(h) {
			i := slices.IndexFunc(p.PCRs, func(x attest.PCR) bool { return x.Index == pcr && x.DigestAlg == h })
			if i < 0 || !bytes.Equal(p.PCRs[i].Digest, want) {
				t.Errorf("%v PCR %d differs from DevMeasurements().PCRs", h, pcr)
			}
		}
	}

	bootloader := boot.Find(4, testenv.EvEFIBootServicesApplication)
	evil := boot.Events[bootloader]
	evil.Measured = []byte("another boot loader")
	tests := []struct {
		name    string
		log     []byte
		badPCRs []int
	}{
		{"boot loader swapped", boot.With(bootloader, evil).Log(), []int{4}},
		{"event dropped", testenv.MeasuredBoot{Events: boot.Events[1:]}.Log(), []int{0}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			el, err := attest.ParseEventLog(tc.log)
			if err != nil {
				t.Fatalf("ParseEventLog: %v", err)
			}
			_, err = el.Verify(p.PCRs)
			var replayErr attest.ReplayError
			if !errors.As(err, &replayErr) || !slices.Equal(replayErr.InvalidPCRs, tc.badPCRs) {
				t.Errorf("Verify: %v, want replay error for PCRs %v", err, tc.badPCRs)
			}
		})
	}

	// The event type is not covered by the digest: a verifier must decide on
	// digests, never on types alone.
	retyped := boot.Events[bootloader]
	retyped.Type = testenv.EvPostCode
	replay(t, boot.With(bootloader, retyped).Log(), p.PCRs)

	// Nor does replay notice a PCR whose events are all missing from the log
	// (here PCR 8, the kernel command line): a verifier must require PCRs
	// without events to hold their reset value.
	last := boot.Events[len(boot.Events)-1]
	if last.PCR != 8 {
		t.Fatalf("last dev event is on PCR %d, want 8", last.PCR)
	}
	replay(t, testenv.MeasuredBoot{Events: boot.Events[:len(boot.Events)-1]}.Log(), p.PCRs)
}

func replay(t *testing.T, log []byte, pcrs []attest.PCR) []attest.Event {
	t.Helper()
	el, err := attest.ParseEventLog(log)
	if err != nil {
		t.Fatalf("ParseEventLog: %v", err)
	}
	events, err := el.Verify(pcrs)
	if err != nil {
		t.Fatalf("event log does not replay: %v", err)
	}
	return events
}

func TestQuoteNeedsEventLog(t *testing.T) {
	t.Parallel()
	tt := open(t, sharedTPM(t), tpm.WithEventLog(""))
	ak := newAK(t, tt)
	if _, err := ak.Quote(testCtx(t), nonce(t)); err == nil || !strings.Contains(err.Error(), "event log") {
		t.Errorf("Quote without event log: %v", err)
	}
}
