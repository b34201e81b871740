package tokens_test

import (
	"context"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/internal/tokens/tokenstest"
	"github.com/sigil-dev/sigil/testenv"
	"github.com/sigil-dev/sigil/token"
)

// BenchmarkExchangeInProcess runs the token exchange of BenchmarkExchange
// (cmd/sigil) on the service alone, without HTTP and TLS: a user's token
// of the IdP exchanged by a workload for another's audience, verified,
// decided by policy, signed in SoftHSM and recorded with its audit entry
// in SQLite, from 16 goroutines. cpu-us/op is this process's CPU time per
// exchange (the client side here is only a function call), which the
// machine's other load disturbs less than a rate; floor-cpu-us/op is the
// same run's crypto floor (the subject token's signature check and one
// HSM signature, as the service does them), and of-floor-cpu their ratio.
func BenchmarkExchangeInProcess(b *testing.B) {
	e := tokenstest.New(b)
	frontend, orders := e.Workload(b, "frontend"), e.Workload(b, "orders")
	user := e.IdP.Token(b, "alice", frontend.ID, "orders:read")
	f := exchange(user, orders.ID, "scope", "orders:read")
	ctx := context.Background()
	floor := func() error {
		if _, err := e.Config.Verifier.Verify(ctx, user, frontend.ID); err != nil {
			return err
		}
		_, _, err := e.Keys.Sign(ctx, token.EventToken, struct{}{})
		return err
	}
	exch := func() error { _, err := e.Service.Token(ctx, frontend.Cert, f); return err }
	testenv.RunConcurrently(b, 200, 16, exch) // warm: statements prepared, caches filled
	b.ResetTimer()
	floorCPU := testenv.RunConcurrently(b, b.N, 16, floor)
	cpu := testenv.RunConcurrently(b, b.N, 16, exch)
	b.ReportMetric(us(cpu)/float64(b.N), "cpu-us/op")
	b.ReportMetric(us(floorCPU)/float64(b.N), "floor-cpu-us/op")
	b.ReportMetric(floorCPU.Seconds()/cpu.Seconds(), "of-floor-cpu")
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
