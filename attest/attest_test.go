package attest_test

import (
	"bytes"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/sigil-dev/sigil/attest"
	"github.com/sigil-dev/sigil/testenv"
)

func TestCompleteAcceptsGenuineEvidence(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	res, err := f.verifier.Complete(f.pending, f.req)
	if err != nil {
		t.Fatal(err)
	}
	want := testenv.DevMeasurements().PCRs(cryptoSHA256)
	for _, i := range requiredPCRs {
		if w, ok := want[i]; ok && !bytes.Equal(res.Boot.PCRs[i], w) {
			t.Errorf("PCR %d = %x, want the dev measurement %x", i, res.Boot.PCRs[i], w)
		}
	}
	if !res.Boot.SecureBoot {
		t.Error("dev measurements have Secure Boot on; facts say off")
	}
	if len(res.Boot.EventDigests) == 0 {
		t.Error("no verified event digests")
	}
	ekPub, _ := x509.MarshalPKIXPublicKey(f.ek.Public)
	if res.EK.Hash != attest.EKHash(ekPub) || res.EK.Certificate == nil {
		t.Errorf("EK hash %s, certificate %v", res.EK.Hash, res.EK.Certificate != nil)
	}
	if !publicEqual(res.Key, res.CSR.PublicKey) {
		t.Error("result key is not the CSR key")
	}
}

// Every tampered or wrong input is rejected at the step that owns it.
func TestCompleteRejects(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	dev := testenv.DevMeasurements()
	tests := []struct {
		name   string
		mutate func(t *testing.T, f *fixture)
		step   attest.Step
		want   string
	}{
		{"activation-wrong-secret", func(t *testing.T, f *fixture) { f.req.Secret[0] ^= 1 }, attest.StepActivation, "does not match"},
		{"activation-no-secret", func(t *testing.T, f *fixture) { f.req.Secret = nil }, attest.StepActivation, "does not match"},
		{"quote-wrong-nonce", func(t *testing.T, f *fixture) {
			f.req.Platform = f.quote(t, f.ak, bytes.Repeat([]byte{7}, attest.NonceSize), nil)
		}, attest.StepQuote, "nonce"},
		{"quote-subset-cve-2022-0317", func(t *testing.T, f *fixture) {
			f.req.Platform = f.quote(t, f.ak, f.pending.Nonce, []int{0, 1, 2, 3, 4, 5, 6})
		}, attest.StepQuote, "does not cover SHA-256 PCR 7"},
		{"quote-no-pcrs", func(t *testing.T, f *fixture) { f.req.Platform.PCRs = nil }, attest.StepQuote, "want 1 to"},
		{"quote-no-quotes", func(t *testing.T, f *fixture) { f.req.Platform.Quotes = nil }, attest.StepQuote, "want 1 to 4 quotes"},
		{"pcr-value-altered", func(t *testing.T, f *fixture) { f.req.Platform.PCRs[4].Digest[0] ^= 1 }, attest.StepQuote, ""},
		{"pcr-dropped-from-quote-values", func(t *testing.T, f *fixture) { f.req.Platform.PCRs = f.req.Platform.PCRs[1:] }, attest.StepQuote, ""},
		{"quote-by-another-ak", func(t *testing.T, f *fixture) {
			other, err := f.tpm.NewAK(ctxT(t))
			if err != nil {
				t.Fatal(err)
			}
			f.req.Platform = f.quote(t, other, f.pending.Nonce, nil)
		}, attest.StepQuote, ""},
		{"eventlog-event-altered", func(t *testing.T, f *fixture) {
			i := dev.Find(4, testenv.EvEFIBootServicesApplication)
			e := dev.Events[i]
			e.Data = append(slices.Clone(e.Data), 'x')
			e.Measured = append([]byte("evil bootloader"), e.Measured...)
			f.req.Platform.EventLog = dev.With(i, e).Log()
		}, attest.StepEventLog, "does not replay"},
		{"eventlog-pcr-events-removed", func(t *testing.T, f *fixture) {
			var kept testenv.MeasuredBoot
			for _, e := range dev.Events {
				if e.PCR != 9 {
					kept.Events = append(kept.Events, e)
				}
			}
			f.req.Platform.EventLog = kept.Log()
		}, attest.StepEventLog, "PCR 9 was extended but the event log has no events for it"},
		{"eventlog-missing", func(t *testing.T, f *fixture) { f.req.Platform.EventLog = nil }, attest.StepEventLog, "missing"},
		{"eventlog-garbage", func(t *testing.T, f *fixture) { f.req.Platform.EventLog = []byte("not an event log") }, attest.StepEventLog, "parse"},
		{"key-certified-over-other-nonce", func(t *testing.T, f *fixture) {
			key := f.newKey(t, f.ak, bytes.Repeat([]byte{9}, attest.NonceSize))
			f.req.Key, f.req.CSR = certified(key), csr(t, key)
		}, attest.StepKey, "not over the challenge nonce"},
		{"key-certified-by-another-ak", func(t *testing.T, f *fixture) {
			other, err := f.tpm.NewAK(ctxT(t))
			if err != nil {
				t.Fatal(err)
			}
			key := f.newKey(t, other, f.pending.Nonce)
			f.req.Key, f.req.CSR = certified(key), csr(t, key)
		}, attest.StepKey, "certification by the AK"},
		{"key-certification-signature-altered", func(t *testing.T, f *fixture) {
			f.req.Key.CreateSignature[len(f.req.Key.CreateSignature)-1] ^= 1
		}, attest.StepKey, "certification by the AK"},
		{"csr-of-a-software-key", func(t *testing.T, f *fixture) { f.req.CSR = csr(t, softKey(t)) }, attest.StepCSR, "not the certified TPM key"},
		{"csr-signature-altered", func(t *testing.T, f *fixture) { f.req.CSR[len(f.req.CSR)-1] ^= 1 }, attest.StepCSR, ""},
		{"csr-missing", func(t *testing.T, f *fixture) { f.req.CSR = nil }, attest.StepCSR, "missing"},
		{"ek-certificate-of-another-key", func(t *testing.T, f *fixture) {
			other, _ := x509.MarshalPKIXPublicKey(softKey(t).Public())
			f.pending.EKPublic = other
		}, attest.StepEK, "for another key"},
		{"ak-is-the-application-key", func(t *testing.T, f *fixture) {
			f.pending.AK.Public = f.req.Key.Public
		}, attest.StepAK, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := f.clone()
			tt.mutate(t, g)
			_, err := g.verifier.Complete(g.pending, g.req)
			if err == nil {
				t.Fatal("Complete accepted tampered evidence")
			}
			if attest.StepOf(err) != tt.step || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Complete error = %v (step %q), want step %q containing %q", err, attest.StepOf(err), tt.step, tt.want)
			}
		})
	}
}

func TestVerifyEKTrust(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ekPub, _ := x509.MarshalPKIXPublicKey(f.ek.Public)
	other := testenv.SWTPM(t)
	tests := []struct {
		name   string
		config attest.Config
		cert   []byte
		want   string
	}{
		{"other-tpm-ca", attest.Config{EKRoots: []*x509.Certificate{other.EKCA.Cert}, PCRs: requiredPCRs}, f.ek.Certificate.Raw, "does not chain to a configured EK root"},
		{"no-cert-not-allow-listed", attest.Config{EKRoots: []*x509.Certificate{f.tp.EKCA.Cert}, PCRs: requiredPCRs}, nil, "not allow-listed"},
		{"garbage-cert", attest.Config{EKRoots: []*x509.Certificate{f.tp.EKCA.Cert}, PCRs: requiredPCRs}, []byte{0x30, 0x03, 1, 2, 3}, "parse EK certificate"},
		{"allow-listed-without-cert", attest.Config{EKAllow: []string{attest.EKHash(ekPub)}, PCRs: requiredPCRs}, nil, ""},
		{"allow-listed-with-untrusted-cert", attest.Config{EKAllow: []string{attest.EKHash(ekPub)}, EKRoots: []*x509.Certificate{other.EKCA.Cert}, PCRs: requiredPCRs}, f.ek.Certificate.Raw, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := newVerifier(t, tt.config)
			_, err := v.VerifyEK(tt.cert, ekPub)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("VerifyEK: %v", err)
				}
				return
			}
			if attest.StepOf(err) != attest.StepEK || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("VerifyEK error = %v, want %q", err, tt.want)
			}
		})
	}
}

// A field the TPM does not sign — an event's type — changes nothing the
// verifier decides on: trust is in digests.
func TestUnsignedEventTypeDoesNotChangeOutcome(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	genuine, err := f.verifier.Complete(f.pending, f.req)
	if err != nil {
		t.Fatal(err)
	}
	dev := testenv.DevMeasurements()
	i := dev.Find(4, testenv.EvEFIBootServicesApplication)
	e := dev.Events[i]
	e.Type = testenv.EvPostCode
	g := f.clone()
	g.req.Platform.EventLog = dev.With(i, e).Log()
	swapped, err := g.verifier.Complete(g.pending, g.req)
	if err != nil {
		t.Fatalf("a retyped event must not fail verification: %v", err)
	}
	if !slices.Equal(genuine.Boot.EventDigests, swapped.Boot.EventDigests) {
		t.Error("event digests changed with an unsigned event type")
	}
}

func TestReverifyRoundTrip(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	res, err := f.verifier.Complete(f.pending, f.req)
	if err != nil {
		t.Fatal(err)
	}
	blob, err := json.Marshal(res.Evidence)
	if err != nil {
		t.Fatal(err)
	}
	var ev attest.Evidence
	if err := json.Unmarshal(blob, &ev); err != nil {
		t.Fatal(err)
	}
	again, err := f.verifier.Reverify(&ev)
	if err != nil {
		t.Fatalf("recorded evidence does not re-verify: %v", err)
	}
	d1, _ := res.Evidence.Digest()
	d2, _ := again.Evidence.Digest()
	if !bytes.Equal(d1, d2) || !slices.Equal(res.Boot.EventDigests, again.Boot.EventDigests) {
		t.Error("re-verification changed the evidence digest or the facts")
	}
	ev.Nonce = make([]byte, attest.NonceSize)
	rand.Read(ev.Nonce)
	if _, err := f.verifier.Reverify(&ev); attest.StepOf(err) != attest.StepQuote {
		t.Fatalf("evidence with a swapped nonce: %v, want a quote failure", err)
	}
}

func (f *fixture) clone() *fixture {
	g := *f
	g.req, g.pending = attest.Completion{}, attest.Pending{}
	b, _ := json.Marshal(f.req)
	json.Unmarshal(b, &g.req)
	b, _ = json.Marshal(f.pending)
	json.Unmarshal(b, &g.pending)
	return &g
}
