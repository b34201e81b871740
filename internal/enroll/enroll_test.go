package enroll_test

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/sigil-dev/sigil/api"
	"github.com/sigil-dev/sigil/attest"
	"github.com/sigil-dev/sigil/ca"
	"github.com/sigil-dev/sigil/internal/device"
	"github.com/sigil-dev/sigil/internal/enroll"
	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/internal/store/backend"
	"github.com/sigil-dev/sigil/testenv"
)

// TestEnrollGenuine enrolls a dev TPM and checks what a relying party and an
// auditor rely on: the certificate, the records and the evidence link.
func TestEnrollGenuine(t *testing.T) {
	t.Parallel()
	d := newDevice(t, testenv.DevMeasurements())
	srv := newServer(t, d.sw.EKCA.Cert)
	ctx := testCtx(t)
	id := workload("a")
	a, iss := d.enroll(t, srv.svc, id)
	cert := leaf(t, iss)

	t.Run("certificate", func(t *testing.T) {
		checkSVID(t, srv, iss, id)
		if !samePublic(cert.PublicKey, a.key.Public()) {
			t.Error("certificate key is not the TPM key certified by the AK")
		}
		if cert.IsCA || cert.KeyUsage != x509.KeyUsageDigitalSignature {
			t.Errorf("IsCA %v, key usage %v: want a digitalSignature-only leaf", cert.IsCA, cert.KeyUsage)
		}
		if iss.PreviousAK != "" {
			t.Errorf("PreviousAK = %q for a first enrollment, want empty", iss.PreviousAK)
		}
		if !iss.Decision.Allowed || !slices.Equal(iss.Decision.PolicyIDs, []string{"dev-enroll-workload"}) {
			t.Errorf("decision %v, want allowed by dev-enroll-workload", iss.Decision)
		}
	})

	ekSum := sha256.Sum256(d.ekPub)
	ekHash := hex.EncodeToString(ekSum[:])
	digest := iss.Certificate.EvidenceDigest

	t.Run("extension", func(t *testing.T) {
		ext, err := ca.EvidenceOf(cert)
		if err != nil {
			t.Fatal(err)
		}
		if got := hex.EncodeToString(ext.Digest); got != digest {
			t.Errorf("extension evidence digest %s, Issued says %s", got, digest)
		}
		if got := hex.EncodeToString(ext.EKHash); got != ekHash {
			t.Errorf("extension EK hash %s, want SHA-256 of the EK %s", got, ekHash)
		}
		if ext.PolicyVersion != srv.policy.Version() || iss.Certificate.PolicyVersion != srv.policy.Version() {
			t.Errorf("policy version %q (extension), %q (Issued), want %q", ext.PolicyVersion, iss.Certificate.PolicyVersion, srv.policy.Version())
		}
	})

	t.Run("store", func(t *testing.T) {
		dev, err := srv.store.Device(ctx, ekHash)
		if err != nil {
			t.Fatalf("Device: %v", err)
		}
		if dev.AKHash != iss.Result.AK.Hash || dev.Status != store.DeviceActive || !bytes.Equal(dev.EKCertDER, d.ek.Certificate.Raw) {
			t.Errorf("device AK %s status %q, want AK %s active with its EK certificate", dev.AKHash, dev.Status, iss.Result.AK.Hash)
		}
		rec, err := srv.store.Certificate(ctx, device.Serial(cert))
		if err != nil {
			t.Fatalf("Certificate: %v", err)
		}
		if !bytes.Equal(rec.DER, cert.Raw) || rec.EvidenceDigest != digest || rec.EKHash != ekHash ||
			rec.SPIFFEID != id || rec.PolicyVersion != srv.policy.Version() || rec.RevokedAt != nil {
			t.Errorf("certificate record %+v does not match the issued certificate", rec)
		}
		evRec, ev := storedEvidence(t, srv.store, digest)
		if evRec.Kind != "enroll" || evRec.EKHash != ekHash {
			t.Errorf("evidence kind %q EK %s, want enroll for %s", evRec.Kind, evRec.EKHash, ekHash)
		}
		if sum := sha256.Sum256(evRec.Bundle); hex.EncodeToString(sum[:]) != digest {
			t.Error("stored evidence bundle does not hash to the digest in the certificate")
		}
		if ev.Identity != id || !bytes.Equal(ev.Nonce, a.ch.Nonce) {
			t.Errorf("evidence for %q nonce %x, want %q and the challenge nonce", ev.Identity, ev.Nonce, id)
		}
		// An auditor re-verifies the recorded evidence offline and gets
		// the certified key back.
		res, err := srv.svc.Verifier.Reverify(ev)
		if err != nil {
			t.Fatalf("Reverify(stored evidence): %v", err)
		}
		if !samePublic(cert.PublicKey, res.Key) {
			t.Error("re-verified evidence certifies another key than the certificate's")
		}
	})

	t.Run("challenge consumed", func(t *testing.T) {
		if _, err := srv.svc.Complete(ctx, a.req); !errors.Is(err, enroll.ErrChallengeUsed) {
			t.Errorf("Complete again = %v, want ErrChallengeUsed", err)
		}
		if n := deviceCertificates(t, srv.store, ekHash); n != 1 {
			t.Errorf("%d certificates stored, want 1", n)
		}
	})
}

// checkSVID verifies an issued chain as a relying party does: to the root,
// as an X.509-SVID for id, for client authentication.
func checkSVID(t *testing.T, srv *server, iss *enroll.Issued, id string) {
	t.Helper()
	if len(iss.Certificate.Chain) != 2 {
		t.Fatalf("chain of %d certificates, want leaf and issuing CA", len(iss.Certificate.Chain))
	}
	cert := leaf(t, iss)
	issuer, err := x509.ParseCertificate(iss.Certificate.Chain[1])
	if err != nil {
		t.Fatal(err)
	}
	if !issuer.Equal(srv.ca.Issuer()) {
		t.Error("chain[1] is not the issuing CA")
	}
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(srv.ca.Root())
	inter.AddCert(issuer)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("chain does not verify to the root: %v", err)
	}
	td := spiffeid.RequireTrustDomainFromString(trustDomain)
	got, _, err := x509svid.Verify([]*x509.Certificate{cert, issuer}, x509bundle.FromX509Authorities(td, []*x509.Certificate{srv.ca.Root()}))
	if err != nil {
		t.Errorf("not a valid X.509-SVID: %v", err)
	}
	if got.String() != id || len(cert.URIs) != 1 || cert.URIs[0].String() != id || iss.Certificate.SPIFFEID != id {
		t.Errorf("SVID for %q (URIs %v, Issued %q), want %q", got, cert.URIs, iss.Certificate.SPIFFEID, id)
	}
}

// TestCompleteSingleUse races 16 completions of one valid request: exactly
// one gets a certificate, every other one is a replay.
func TestCompleteSingleUse(t *testing.T) {
	t.Parallel()
	d := newDevice(t, testenv.DevMeasurements())
	srv := newServer(t, d.sw.EKCA.Cert)
	ctx := testCtx(t)
	// A second replica: another Service on its own connection to the same
	// database, as several sigild processes would share one store.
	replica, err := backend.Open(ctx, srv.dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { replica.Close() })
	other := *srv.svc
	other.Store = replica

	tests := []struct {
		name     string
		services []*enroll.Service
	}{
		{"one replica", []*enroll.Service{srv.svc}},
		{"two replicas sharing the database", []*enroll.Service{srv.svc, &other}},
	}
	ak := d.newAK(t)
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := d.begin(t, srv.svc, ak, workload("a"))
			const n = 16
			errs := make([]error, n)
			issued := make([]*enroll.Issued, n)
			start := make(chan struct{})
			var wg sync.WaitGroup
			for g := range n {
				svc := tc.services[g%len(tc.services)]
				wg.Go(func() {
					<-start
					issued[g], errs[g] = svc.Complete(ctx, a.req)
				})
			}
			close(start)
			wg.Wait()
			ok := 0
			for g, err := range errs {
				switch {
				case err == nil && issued[g] != nil:
					ok++
				case !errors.Is(err, enroll.ErrChallengeUsed):
					t.Errorf("completion %d: %v, want ErrChallengeUsed", g, err)
				}
			}
			if ok != 1 {
				t.Errorf("%d completions succeeded, want exactly 1", ok)
			}
			if got := deviceCertificates(t, srv.store, ekHashOf(d)); got != i+1 {
				t.Errorf("%d certificates stored after %d challenges, want %d", got, i+1, i+1)
			}
		})
	}
}

// TestFailedAttemptBurnsChallenge: a completion that fails verification
// consumes the challenge, so the genuine completion after it is a replay.
func TestFailedAttemptBurnsChallenge(t *testing.T) {
	t.Parallel()
	d := newDevice(t, testenv.DevMeasurements())
	srv := newServer(t, d.sw.EKCA.Cert)
	ctx := testCtx(t)
	ak := d.newAK(t)
	tests := []struct {
		name  string
		spoil func(t *testing.T, a *attempt) api.CompleteRequest
		step  attest.Step
	}{
		{"wrong secret", func(t *testing.T, a *attempt) api.CompleteRequest {
			r := a.req
			r.Secret = bytes.Clone(r.Secret)
			r.Secret[0] ^= 1
			return r
		}, attest.StepActivation},
		{"no secret", func(t *testing.T, a *attempt) api.CompleteRequest {
			r := a.req
			r.Secret = nil
			return r
		}, attest.StepActivation},
		{"quote over another nonce", func(t *testing.T, a *attempt) api.CompleteRequest {
			r := a.req
			r.Platform = quote(t, a.ak, randomNonce(t))
			return r
		}, attest.StepQuote},
		{"key certified over another nonce", func(t *testing.T, a *attempt) api.CompleteRequest {
			k := newKey(t, a.ak, randomNonce(t))
			r := a.req
			r.Key, r.CSR = certified(k), csrFor(t, k, a.identity)
			return r
		}, attest.StepKey},
		{"CSR by another key", func(t *testing.T, a *attempt) api.CompleteRequest {
			r := a.req
			r.CSR = csrFor(t, softKey(t), a.identity)
			return r
		}, attest.StepCSR},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := d.begin(t, srv.svc, ak, workload("a"))
			_, err := srv.svc.Complete(ctx, tc.spoil(t, a))
			if got := stepOf(err); got != tc.step {
				t.Fatalf("spoilt completion: %v (step %q), want a failure at step %q", err, got, tc.step)
			}
			if _, err := srv.svc.Complete(ctx, a.req); !errors.Is(err, enroll.ErrChallengeUsed) {
				t.Errorf("genuine completion after the failed one: %v, want ErrChallengeUsed", err)
			}
		})
	}
	if _, err := srv.store.Device(ctx, ekHashOf(d)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Device after failed attempts only: %v, want ErrNotFound", err)
	}
}

// TestChallengeLifetime checks the challenge id and TTL, with the service
// clock moved forward between challenge and completion.
func TestChallengeLifetime(t *testing.T) {
	t.Parallel()
	d := newDevice(t, testenv.DevMeasurements())
	srv := newServer(t, d.sw.EKCA.Cert)
	ctx := testCtx(t)
	ak := d.newAK(t)
	at := func(now time.Time) *enroll.Service {
		s := *srv.svc
		s.Now = func() time.Time { return now }
		return &s
	}
	same := func(a *attempt) string { return a.ch.ID }
	fixed := func(id string) func(*attempt) string { return func(*attempt) string { return id } }
	tests := []struct {
		name  string
		after time.Duration // clock advance between challenge and completion
		id    func(*attempt) string
		want  error
	}{
		{"just before expiry", challengeTTL - time.Microsecond, same, nil},
		{"at expiry", challengeTTL, same, enroll.ErrChallengeExpired},
		{"after expiry", challengeTTL + time.Second, same, enroll.ErrChallengeExpired},
		{"unknown id", 0, fixed(strings.Repeat("ab", 16)), enroll.ErrUnknownChallenge},
		{"unknown id of the longest allowed size", 0, fixed(strings.Repeat("a", 64)), enroll.ErrUnknownChallenge},
		{"empty id", 0, fixed(""), enroll.ErrBadRequest},
		{"oversized id", 0, fixed(strings.Repeat("a", 65)), enroll.ErrBadRequest},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t0 := time.Now().Truncate(time.Microsecond)
			a := d.begin(t, at(t0), ak, workload("a"))
			if !a.ch.ExpiresAt.Equal(t0.Add(challengeTTL)) {
				t.Errorf("challenge expires at %v, want %v", a.ch.ExpiresAt, t0.Add(challengeTTL))
			}
			req := a.req
			req.ChallengeID = tc.id(a)
			iss, err := at(t0.Add(tc.after)).Complete(ctx, req)
			switch {
			case tc.want == nil && (err != nil || iss == nil):
				t.Errorf("Complete = %v, want a certificate", err)
			case tc.want != nil && !errors.Is(err, tc.want):
				t.Errorf("Complete = %v, want %v", err, tc.want)
			}
		})
	}
}

// TestIdentity: identities that cannot be SPIFFE IDs of the trust domain
// are refused at the challenge; well-formed ones that policy does not grant
// are denied at completion, and nothing is recorded.
func TestIdentity(t *testing.T) {
	t.Parallel()
	d := newDevice(t, testenv.DevMeasurements())
	srv := newServer(t, d.sw.EKCA.Cert)
	ctx := testCtx(t)
	ak := d.newAK(t)
	tests := []struct {
		name      string
		identity  string
		challenge error  // error of Challenge; nil means Challenge succeeds and Complete is denied
		denial    string // in the denial's message
	}{
		{"other trust domain", "spiffe://other.test/workload/a", enroll.ErrBadRequest, ""},
		{"trust domain suffix", "spiffe://sigil.test.evil/workload/a", enroll.ErrBadRequest, ""},
		{"not spiffe", "https://sigil.test/workload/a", enroll.ErrBadRequest, ""},
		{"empty", "", enroll.ErrBadRequest, ""},
		{"dot segment", "spiffe://sigil.test/workload/../admin", enroll.ErrBadRequest, ""},
		{"trailing slash", "spiffe://sigil.test/workload/a/", enroll.ErrBadRequest, ""},
		{"query", "spiffe://sigil.test/workload/a?x=1", enroll.ErrBadRequest, ""},
		{"upper case trust domain", "spiffe://SIGIL.test/workload/a", enroll.ErrBadRequest, ""},
		// The SPIFFE ID standard's limits, which go-spiffe does not enforce.
		{"3000 bytes", "spiffe://sigil.test/workload/" + strings.Repeat("a", 2971), enroll.ErrBadRequest, ""},
		{"2049 bytes", "spiffe://sigil.test/workload/" + strings.Repeat("a", 2020), enroll.ErrBadRequest, ""},
		{"leading space", " spiffe://sigil.test/workload/a", enroll.ErrBadRequest, ""},
		{"nested path", "spiffe://sigil.test/workload/a/b", nil, "no policy permits"},
		{"outside /workload", "spiffe://sigil.test/admin", nil, "no policy permits"},
		// A trust domain ID parses as a SPIFFE ID but names no workload.
		{"trust domain itself", "spiffe://sigil.test", enroll.ErrBadRequest, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.challenge != nil {
				_, err := srv.svc.Challenge(ctx, d.challengeRequest(ak, tc.identity))
				if !errors.Is(err, tc.challenge) {
					t.Errorf("Challenge(%.80q) = %v, want %v", tc.identity, err, tc.challenge)
				}
				return
			}
			a := d.begin(t, srv.svc, ak, tc.identity)
			_, err := srv.svc.Complete(ctx, a.req)
			var denied *enroll.DeniedError
			if !errors.As(err, &denied) {
				t.Fatalf("Complete(%q) = %v, want a *DeniedError", tc.identity, err)
			}
			if denied.Identity != tc.identity || denied.Decision.Allowed || !strings.Contains(err.Error(), tc.denial) {
				t.Errorf("denial %q (identity %q), want one of %q saying %q", err, denied.Identity, tc.identity, tc.denial)
			}
		})
	}
	if _, err := srv.store.Device(ctx, ekHashOf(d)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Device after denials only: %v, want ErrNotFound", err)
	}
}

// TestBootPolicy: the same server enrolls a TPM that booted the dev
// firmware and denies one that booted debug firmware, by the forbid policy.
func TestBootPolicy(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		boot   testenv.MeasuredBoot
		forbid string // the forbid policy that denies; "" means allowed
	}{
		{"dev firmware", testenv.DevMeasurements(), ""},
		{"debug firmware", testenv.DebugMeasurements(), "no-debug-firmware"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := newDevice(t, tc.boot)
			srv := newServer(t, d.sw.EKCA.Cert)
			a := d.begin(t, srv.svc, d.newAK(t), workload("a"))
			iss, err := srv.svc.Complete(testCtx(t), a.req)
			if tc.forbid == "" {
				if err != nil || iss == nil {
					t.Fatalf("Complete = %v, want a certificate", err)
				}
				return
			}
			var denied *enroll.DeniedError
			if !errors.As(err, &denied) {
				t.Fatalf("Complete = %v, want a *DeniedError", err)
			}
			if !slices.Equal(denied.Decision.PolicyIDs, []string{tc.forbid}) || !strings.Contains(err.Error(), `"`+tc.forbid+`"`) {
				t.Errorf("denial %q (policies %v), want one by %q", err, denied.Decision.PolicyIDs, tc.forbid)
			}
			if _, err := srv.store.Device(testCtx(t), ekHashOf(d)); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("Device after the denial: %v, want ErrNotFound", err)
			}
		})
	}
}

// TestDisabledDevice: disabling a device revokes its certificates and stops
// enrollment and renewal, also of challenges handed out before.
func TestDisabledDevice(t *testing.T) {
	t.Parallel()
	d := newDevice(t, testenv.DevMeasurements())
	srv := newServer(t, d.sw.EKCA.Cert)
	ctx := testCtx(t)
	a, iss := d.enroll(t, srv.svc, workload("a"))
	cert := leaf(t, iss)
	ekHash := ekHashOf(d)

	// Challenges handed out while the device was active.
	pending := d.begin(t, srv.svc, a.ak, workload("a"))
	renewCh, err := srv.svc.RenewChallenge(ctx, cert)
	if err != nil {
		t.Fatal(err)
	}

	revoked, err := srv.store.SetDeviceStatus(ctx, ekHash, store.DeviceDisabled, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(revoked.Certificates, []string{device.Serial(cert)}) {
		t.Errorf("disabling revoked %v, want the device's certificate %s", revoked, device.Serial(cert))
	}
	rec, err := srv.store.Certificate(ctx, device.Serial(cert))
	if err != nil || rec.RevokedAt == nil || rec.RevocationReason != store.ReasonDeviceDisabled {
		t.Errorf("certificate record %+v (%v), want revoked with reason %q", rec, err, store.ReasonDeviceDisabled)
	}

	tests := []struct {
		name string
		run  func(t *testing.T) error
		want error
		not  error // must not match: the documented answer is want alone
	}{
		{"enrollment challenge", func(t *testing.T) error {
			_, err := srv.svc.Challenge(ctx, d.challengeRequest(a.ak, workload("a")))
			return err
		}, enroll.ErrDeviceDisabled, nil},
		{"enrollment challenge with a new AK", func(t *testing.T) error {
			_, err := srv.svc.Challenge(ctx, d.challengeRequest(d.newAK(t), workload("b")))
			return err
		}, enroll.ErrDeviceDisabled, nil},
		{"completion of a challenge issued before", func(t *testing.T) error {
			_, err := srv.svc.Complete(ctx, pending.req)
			return err
		}, enroll.ErrDeviceDisabled, nil},
		// Disabling revoked the certificate, and renewable looks at the
		// certificate first: ErrNotRenewable ("revoked or its device
		// disabled", renew.go), not ErrDeviceDisabled.
		{"renewal challenge", func(t *testing.T) error {
			_, err := srv.svc.RenewChallenge(ctx, cert)
			return err
		}, enroll.ErrNotRenewable, enroll.ErrDeviceDisabled},
		{"renewal on a challenge issued before", func(t *testing.T) error {
			_, err := srv.svc.Renew(ctx, cert, renewRequest(t, a, renewCh))
			return err
		}, enroll.ErrNotRenewable, enroll.ErrDeviceDisabled},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.run(t)
			if !errors.Is(err, tc.want) || (tc.not != nil && errors.Is(err, tc.not)) {
				t.Errorf("got %v, want %v only", err, tc.want)
			}
		})
	}
	if n := deviceCertificates(t, srv.store, ekHash); n != 1 {
		t.Errorf("%d certificates stored, want only the revoked one", n)
	}
}

func ekHashOf(d *machine) string {
	sum := sha256.Sum256(d.ekPub)
	return hex.EncodeToString(sum[:])
}
