package enroll_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/api"
	"github.com/sigil-dev/sigil/internal/enroll"
	"github.com/sigil-dev/sigil/testenv"
)

// BenchmarkEnroll runs whole enrollments as client.Enroll does them (read
// the EKs, new AK, challenge, activation, certified key, quote, CSR,
// completion) against a swtpm, with the CA keys on SoftHSM and a SQLite
// store. The TPM is opened once. Every enrollment makes a new AK, so from the
// second on each one is a rebind (one more policy decision).
// Metrics: p50/p99 latency of the whole enrollment and of its server side
// (Challenge + Complete).
func BenchmarkEnroll(b *testing.B) {
	d := newDevice(b, testenv.DevMeasurements())
	srv := newServer(b, d.sw.EKCA.Cert)
	ctx := b.Context()
	var total, server []time.Duration
	for b.Loop() {
		start := time.Now()
		s, err := enrollOnce(ctx, d, srv.svc, workload("bench"))
		if err != nil {
			b.Fatal(err)
		}
		total = append(total, time.Since(start))
		server = append(server, s)
	}
	reportLatency(b, "", total)
	reportLatency(b, "server-", server)
}

// enrollOnce is one enrollment; it returns the time spent in the service.
func enrollOnce(ctx context.Context, d *machine, svc *enroll.Service, identity string) (time.Duration, error) {
	if _, err := pickEK(ctx, d.tpm); err != nil {
		return 0, err
	}
	ak, err := d.tpm.NewAK(ctx)
	if err != nil {
		return 0, err
	}
	t0 := time.Now()
	ch, err := svc.Challenge(ctx, d.challengeRequest(ak, identity))
	if err != nil {
		return 0, err
	}
	server := time.Since(t0)
	req, key, err := d.answer(ctx, ak, ch, identity)
	if err != nil {
		return 0, err
	}
	defer key.Close()
	t1 := time.Now()
	if _, err := svc.Complete(ctx, req); err != nil {
		return 0, err
	}
	return server + time.Since(t1), nil
}

// BenchmarkVerifyRecorded re-verifies one recorded enrollment evidence, as
// an auditor or a replica does, with no TPM in the loop. In the same run it
// measures the raw baseline: one ECDSA P-256 verification
// (ecdsa.VerifyASN1), and reports the cost of a Reverify in baseline
// verifications.
func BenchmarkVerifyRecorded(b *testing.B) {
	d := newDevice(b, testenv.DevMeasurements())
	srv := newServer(b, d.sw.EKCA.Cert)
	_, iss := d.enroll(b, srv.svc, workload("bench"))
	_, ev := storedEvidence(b, srv.store, iss.Certificate.EvidenceDigest)
	v := srv.svc.Verifier
	for b.Loop() {
		if _, err := v.Reverify(ev); err != nil {
			b.Fatal(err)
		}
	}
	reverify := float64(b.N) / b.Elapsed().Seconds()
	baseline := p256VerifyRate(b, 4000)
	b.ReportMetric(reverify, "reverify/s")
	b.ReportMetric(baseline, "p256-verify/s")
	b.ReportMetric(baseline/reverify, "p256-verifies/reverify")
}

// p256VerifyRate times n ECDSA P-256 verifications of one signature over a
// SHA-256 digest and returns them per second.
func p256VerifyRate(b *testing.B, n int) float64 {
	b.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	digest := sha256.Sum256([]byte("sigil baseline"))
	sig, err := ecdsa.SignASN1(rand.Reader, key, digest[:])
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	for range n {
		if !ecdsa.VerifyASN1(&key.PublicKey, digest[:], sig) {
			b.Fatal("baseline signature does not verify")
		}
	}
	return float64(n) / time.Since(start).Seconds()
}

// BenchmarkRenew renews a certificate over and over, each time the one the
// previous renewal issued, as client.Renew does: renewal challenge, quote by
// the enrolled AK on the swtpm, CSR signed by the TPM key, verification,
// issuance on SoftHSM, records in SQLite.
// Metrics: renewals/s and p50/p99 latency, whole and server side
// (RenewChallenge + Renew).
func BenchmarkRenew(b *testing.B) {
	d := newDevice(b, testenv.DevMeasurements())
	srv := newServer(b, d.sw.EKCA.Cert)
	a, iss := d.enroll(b, srv.svc, workload("bench"))
	peer := leaf(b, iss)
	ctx := b.Context()
	var total, server []time.Duration
	for b.Loop() {
		start := time.Now()
		next, s, err := renewOnce(ctx, srv.svc, a, peer)
		if err != nil {
			b.Fatal(err)
		}
		total = append(total, time.Since(start))
		server = append(server, s)
		peer = next
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "renewals/s")
	reportLatency(b, "", total)
	reportLatency(b, "server-", server)
}

// renewOnce renews peer; it returns the new certificate and the time spent
// in the service.
func renewOnce(ctx context.Context, svc *enroll.Service, a *attempt, peer *x509.Certificate) (*x509.Certificate, time.Duration, error) {
	t0 := time.Now()
	ch, err := svc.RenewChallenge(ctx, peer)
	if err != nil {
		return nil, 0, err
	}
	server := time.Since(t0)
	platform, err := quotePlatform(ctx, a.ak, ch.Nonce)
	if err != nil {
		return nil, 0, err
	}
	csr, err := makeCSR(a.key, a.identity)
	if err != nil {
		return nil, 0, err
	}
	t1 := time.Now()
	iss, err := svc.Renew(ctx, peer, api.RenewRequest{ChallengeID: ch.ID, Platform: platform, CSR: csr})
	if err != nil {
		return nil, 0, err
	}
	server += time.Since(t1)
	cert, err := x509.ParseCertificate(iss.Certificate.Chain[0])
	if err != nil {
		return nil, 0, fmt.Errorf("renewed certificate: %w", err)
	}
	return cert, server, nil
}

// reportLatency reports the nearest-rank p50 and p99 of ds in milliseconds.
// With fewer than 100 samples p99 is the maximum.
func reportLatency(b *testing.B, prefix string, ds []time.Duration) {
	b.Helper()
	if len(ds) == 0 {
		return
	}
	ds = slices.Clone(ds)
	slices.Sort(ds)
	rank := func(p float64) time.Duration {
		i := int(math.Ceil(p*float64(len(ds)))) - 1
		return ds[max(0, min(i, len(ds)-1))]
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(rank(0.50)), prefix+"p50-ms")
	b.ReportMetric(ms(rank(0.99)), prefix+"p99-ms")
}
