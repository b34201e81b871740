package enroll_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"math/big"
	"slices"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/api"
	"github.com/sigil-dev/sigil/attest"
	"github.com/sigil-dev/sigil/ca"
	"github.com/sigil-dev/sigil/internal/device"
	"github.com/sigil-dev/sigil/internal/enroll"
	"github.com/sigil-dev/sigil/testenv"
)

// renewRequest answers a renewal challenge as client.Renew does: a quote by
// the enrolled AK over the nonce and a CSR by the certificate's TPM key.
func renewRequest(t testing.TB, a *attempt, ch *api.Challenge) api.RenewRequest {
	t.Helper()
	return api.RenewRequest{ChallengeID: ch.ID, Platform: quote(t, a.ak, ch.Nonce), CSR: csrFor(t, a.key, a.identity)}
}

// forge self-signs a client certificate for key that copies serial and the
// URI SAN of cert: what an attacker could present if nothing checked the
// chain.
func forge(t testing.TB, cert *x509.Certificate, serial *big.Int, key *ecdsa.PrivateKey) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: cert.Subject, URIs: cert.URIs,
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestRenew renews an enrolled certificate with a fresh quote by the pinned
// AK and a CSR by the same TPM key, then tries every way to get it wrong.
func TestRenew(t *testing.T) {
	t.Parallel()
	d := newDevice(t, testenv.DevMeasurements())
	srv := newServer(t, d.sw.EKCA.Cert)
	ctx := testCtx(t)
	a, iss := d.enroll(t, srv.svc, workload("a"))
	cert := leaf(t, iss)
	ekHash := ekHashOf(d)

	ch, err := srv.svc.RenewChallenge(ctx, cert)
	if err != nil {
		t.Fatalf("RenewChallenge: %v", err)
	}
	if ch.Credential != nil || ch.Secret != nil || len(ch.Nonce) != attest.NonceSize || !slices.Equal(ch.PCRs, requiredPCRs) {
		t.Errorf("renewal challenge %+v, want a %d-byte nonce, PCRs %v and no credential", ch, attest.NonceSize, requiredPCRs)
	}
	req := renewRequest(t, a, ch)
	iss2, err := srv.svc.Renew(ctx, cert, req)
	if err != nil {
		t.Fatalf("Renew: %v", err)
	}
	cert2 := leaf(t, iss2)

	t.Run("genuine", func(t *testing.T) {
		checkSVID(t, srv, iss2, workload("a"))
		if !samePublic(cert2.PublicKey, cert.PublicKey) {
			t.Error("renewed certificate has another key than the TPM key")
		}
		if device.Serial(cert2) == device.Serial(cert) {
			t.Error("renewed certificate reuses the serial")
		}
		digest := iss2.Certificate.EvidenceDigest
		rec, err := srv.store.Evidence(ctx, digest)
		if err != nil {
			t.Fatalf("Evidence: %v", err)
		}
		if rec.Kind != "renew" || rec.EKHash != ekHash {
			t.Errorf("evidence kind %q EK %s, want renew for %s", rec.Kind, rec.EKHash, ekHash)
		}
		if sum := sha256.Sum256(rec.Bundle); hex.EncodeToString(sum[:]) != digest {
			t.Error("stored renewal evidence does not hash to the digest in the certificate")
		}
		ev, err := attest.ParseRenewal(rec.Bundle)
		if err != nil {
			t.Fatal(err)
		}
		if ev.Previous != device.Serial(cert) || !bytes.Equal(ev.Nonce, ch.Nonce) || !bytes.Equal(ev.AKPublic, a.ak.AttestationParameters().Public) {
			t.Errorf("renewal evidence (previous %s, nonce %x) does not record the renewed certificate, nonce and pinned AK", ev.Previous, ev.Nonce)
		}
		ext, err := ca.EvidenceOf(cert2)
		if err != nil {
			t.Fatal(err)
		}
		if hex.EncodeToString(ext.Digest) != digest {
			t.Errorf("extension digest %x, Issued says %s", ext.Digest, digest)
		}
		crec, err := srv.store.Certificate(ctx, device.Serial(cert2))
		if err != nil || !bytes.Equal(crec.DER, cert2.Raw) || crec.EvidenceDigest != digest {
			t.Errorf("certificate record %+v (%v) does not match the renewed certificate", crec, err)
		}
	})
	t.Run("replayed", func(t *testing.T) {
		if _, err := srv.svc.Renew(ctx, cert, req); !errors.Is(err, enroll.ErrChallengeUsed) {
			t.Errorf("Renew again = %v, want ErrChallengeUsed", err)
		}
	})
	t.Run("renewed certificate renews", func(t *testing.T) {
		ch, err := srv.svc.RenewChallenge(ctx, cert2)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := srv.svc.Renew(ctx, cert2, renewRequest(t, a, ch)); err != nil {
			t.Errorf("Renew(renewed certificate): %v", err)
		}
	})

	otherAK := d.newAK(t)
	challenge := func(t *testing.T) *api.Challenge {
		t.Helper()
		ch, err := srv.svc.RenewChallenge(ctx, cert)
		if err != nil {
			t.Fatalf("RenewChallenge: %v", err)
		}
		return ch
	}
	attacker := softKey(t)
	tests := []struct {
		name string
		run  func(t *testing.T) error
		want error       // sentinel, or nil when step says
		step attest.Step // attestation step that fails
	}{
		{"CSR by another key", func(t *testing.T) error {
			ch := challenge(t)
			r := renewRequest(t, a, ch)
			r.CSR = csrFor(t, softKey(t), a.identity)
			_, err := srv.svc.Renew(ctx, cert, r)
			return err
		}, nil, attest.StepCSR},
		{"quote over another nonce", func(t *testing.T) error {
			ch := challenge(t)
			r := renewRequest(t, a, ch)
			r.Platform = quote(t, a.ak, randomNonce(t))
			_, err := srv.svc.Renew(ctx, cert, r)
			return err
		}, nil, attest.StepQuote},
		{"quote by another AK of the TPM", func(t *testing.T) error {
			ch := challenge(t)
			r := renewRequest(t, a, ch)
			r.Platform = quote(t, otherAK, ch.Nonce)
			_, err := srv.svc.Renew(ctx, cert, r)
			return err
		}, nil, attest.StepQuote},
		{"challenge of another certificate", func(t *testing.T) error {
			ch := challenge(t)
			_, err := srv.svc.Renew(ctx, cert2, renewRequest(t, a, ch))
			return err
		}, enroll.ErrBadRequest, ""},
		{"enrollment challenge", func(t *testing.T) error {
			ech, err := srv.svc.Challenge(ctx, d.challengeRequest(a.ak, a.identity))
			if err != nil {
				t.Fatal(err)
			}
			_, err = srv.svc.Renew(ctx, cert, renewRequest(t, a, ech))
			return err
		}, enroll.ErrBadRequest, ""},
		{"renewal challenge used to enroll", func(t *testing.T) error {
			r := a.req
			r.ChallengeID = challenge(t).ID
			_, err := srv.svc.Complete(ctx, r)
			return err
		}, enroll.ErrBadRequest, ""},
		{"expired challenge", func(t *testing.T) error {
			ch := challenge(t)
			late := *srv.svc
			late.Now = func() time.Time { return time.Now().Add(challengeTTL + time.Second) }
			_, err := late.Renew(ctx, cert, renewRequest(t, a, ch))
			return err
		}, enroll.ErrChallengeExpired, ""},
		{"unknown challenge", func(t *testing.T) error {
			_, err := srv.svc.Renew(ctx, cert, api.RenewRequest{ChallengeID: "00112233445566778899aabbccddeeff"})
			return err
		}, enroll.ErrUnknownChallenge, ""},
		{"no client certificate", func(t *testing.T) error {
			_, err := srv.svc.RenewChallenge(ctx, nil)
			return err
		}, enroll.ErrNotRenewable, ""},
		{"certificate not issued here", func(t *testing.T) error {
			serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
			_, err := srv.svc.RenewChallenge(ctx, forge(t, cert, serial, attacker))
			return err
		}, enroll.ErrNotRenewable, ""},
		// A self-signed certificate that copies an issued serial is not
		// that certificate. sigild's TLS layer verifies client chains,
		// but the service must not rely on it: it would renew a key that
		// is not in the TPM.
		{"forged certificate with an issued serial", func(t *testing.T) error {
			_, err := srv.svc.RenewChallenge(ctx, forge(t, cert, cert.SerialNumber, attacker))
			return err
		}, enroll.ErrNotRenewable, ""},
		{"forged certificate on a genuine challenge", func(t *testing.T) error {
			ch := challenge(t)
			r := api.RenewRequest{ChallengeID: ch.ID, Platform: quote(t, a.ak, ch.Nonce), CSR: csrFor(t, attacker, a.identity)}
			_, err := srv.svc.Renew(ctx, forge(t, cert, cert.SerialNumber, attacker), r)
			return err
		}, enroll.ErrNotRenewable, ""},
	}
	before := deviceCertificates(t, srv.store, ekHash)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.run(t)
			switch {
			case err == nil:
				t.Fatal("renewal succeeded")
			case tc.want != nil && !errors.Is(err, tc.want):
				t.Errorf("got %v, want %v", err, tc.want)
			case tc.step != "" && stepOf(err) != tc.step:
				t.Errorf("got %v (step %q), want a failure at step %q", err, stepOf(err), tc.step)
			}
		})
	}
	if n := deviceCertificates(t, srv.store, ekHash); n != before {
		t.Errorf("%d certificates stored after failed renewals, want %d", n, before)
	}

	t.Run("rebound since the challenge", func(t *testing.T) {
		ch := challenge(t)
		b := d.beginReplace(t, srv.svc, d.newAK(t), workload("a")) // a new AK: the EK is rebound
		if _, err := srv.svc.Complete(ctx, b.req); err != nil {
			t.Fatal(err)
		}
		if _, err := srv.svc.Renew(ctx, cert, renewRequest(t, a, ch)); !errors.Is(err, enroll.ErrAKReplaced) {
			t.Errorf("Renew on a challenge pinned to the old AK = %v, want ErrAKReplaced", err)
		}
	})
}
