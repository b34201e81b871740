package main_test

import (
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/client"
	"github.com/sigil-dev/sigil/testenv"
)

// BenchmarkChangeOfTrustPropagation measures, against a real sigild, the
// time from a change of trust to a resource server refusing the tokens of
// the distrusted workload: a verify.Verifier following sigild's revocation
// feed (as in BenchmarkRevocationPropagation), polled every millisecond.
// Each iteration enrolls a fresh workload on the third TPM, has the
// verifier accept its token, then triggers:
//
//   - failed-renewal: the host's event log turns to the debug firmware's
//     and the workload renews (client.Workload.Renew): the renewal fails
//     attestation and revokes the certificate the token is bound to;
//   - policy-reload: a policy file forbidding the workload's identity is
//     written and sigild gets SIGHUP: the reload re-evaluates the fleet.
//
// baseline-token-revoked is a token revoked directly (sigil revoke), in the
// same run: read each sub-benchmark's p50-ms and p99-ms (goal: p99 < 1 s)
// and its x-baseline-p50, its p50 over the baseline's.
func BenchmarkChangeOfTrustPropagation(b *testing.B) {
	s := startStack(b, "3")
	p := startPropagation(b, s, "")
	var baseline time.Duration
	b.Run("baseline-token-revoked", func(b *testing.B) {
		baseline = reportLatencies(b, 0, func(int) time.Duration { return p.revoke() })
	})
	tr := &trustBench{s: s, p: p, b: b}
	b.Run("failed-renewal", func(b *testing.B) { reportLatencies(b, baseline, tr.failedRenewal) })
	b.Run("policy-reload", func(b *testing.B) { reportLatencies(b, baseline, tr.policyReload) })
}

// reportLatencies runs one measurement per iteration and reports p50, p99
// and, given a baseline p50, the ratio to it; it returns the p50.
func reportLatencies(b *testing.B, baseline time.Duration, measure func(i int) time.Duration) time.Duration {
	var lat []time.Duration
	for i := 0; b.Loop(); i++ {
		lat = append(lat, measure(i))
	}
	slices.Sort(lat)
	p50 := percentile(lat, 50)
	b.ReportMetric(ms(p50), "p50-ms")
	b.ReportMetric(ms(percentile(lat, 99)), "p99-ms")
	if baseline > 0 {
		b.ReportMetric(float64(p50)/float64(baseline), "x-baseline-p50")
	}
	return p50
}

// trustBench enrolls the workloads whose trust changes.
type trustBench struct {
	s *stack
	p *propagation
	b *testing.B
	n int
}

// victim enrolls a new workload on the third TPM, reading its event log
// from a copy the benchmark can change, gets a token for orders bound to
// its certificate and has the verifier accept it.
func (tr *trustBench) victim(b *testing.B) (w *client.Workload, cert *x509.Certificate, tok, logPath, id string) {
	b.StopTimer()
	defer b.StartTimer()
	tr.n++
	id = fmt.Sprintf("spiffe://sigil.test/workload/trust-bench-%d", tr.n)
	dir := filepath.Join(tr.s.dir, "trust-bench", fmt.Sprint(tr.n))
	addr, devLog := tr.s.tpm(2)
	logPath = filepath.Join(dir, "eventlog.bin")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		b.Fatal(err)
	}
	copyFile(b, devLog, logPath)
	if out, code := tr.s.run("sigil", "enroll", "--tpm", addr, "--event-log", logPath, "--identity", id, "--state", dir); code != 0 {
		b.Fatalf("enroll %s: %s", id, out)
	}
	w, err := client.Open(b.Context(), dir)
	if err != nil {
		b.Fatal(err)
	}
	st, err := client.LoadState(dir)
	if err != nil {
		b.Fatal(err)
	}
	t, err := w.Token(b.Context(), client.TokenRequest{Audience: []string{ordersID}})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := tr.p.v.Verify(b.Context(), t.AccessToken, st.Chain[0]); err != nil {
		b.Fatalf("Verify before the change of trust: %v", err)
	}
	return w, st.Chain[0], t.AccessToken, logPath, id
}

func (tr *trustBench) failedRenewal(int) time.Duration {
	b := tr.b
	w, cert, tok, logPath, _ := tr.victim(b)
	defer w.Close()
	if err := os.WriteFile(logPath, testenv.DebugMeasurements().Log(), 0o600); err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	if _, err := w.Renew(b.Context()); err == nil {
		b.Fatal("a renewal with the debug firmware's event log succeeded")
	}
	return tr.refused(start, tok, cert)
}

func (tr *trustBench) policyReload(int) time.Duration {
	b := tr.b
	w, cert, tok, _, id := tr.victim(b)
	w.Close()
	rule := fmt.Sprintf("@id(\"trust-bench\")\nforbid (principal, action, resource) when { resource == Sigil::Identity::%q };\n", id)
	writeFile(b, filepath.Join(tr.s.env["SIGIL_POLICY_DIR"], "trust-bench.cedar"), rule)
	start := time.Now()
	tr.s.hup(b)
	return tr.refused(start, tok, cert)
}

// refused polls the verifier until it refuses tok and returns how long
// that took from start.
func (tr *trustBench) refused(start time.Time, tok string, cert *x509.Certificate) time.Duration {
	return untilRefused(tr.b, start, func() error {
		_, err := tr.p.v.Verify(tr.b.Context(), tok, cert)
		return err
	})
}
