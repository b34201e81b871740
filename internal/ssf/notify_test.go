package ssf_test

import (
	"testing"
	"time"

	"github.com/sigil-dev/sigil/internal/device"
	"github.com/sigil-dev/sigil/internal/ssf"
	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/internal/tokens/tokenstest"
	"github.com/sigil-dev/sigil/testenv"
)

// TestWokenByStore: a transmitter that reads the store once a minute only
// wakes its long polls and pushers within a second of a certificate
// revoked in the store (as the policy re-evaluation and a failed renewal
// do, without the token service), on SQLite as on PostgreSQL: the
// store's notification (store.FeedNotifier) wakes it.
func TestWokenByStore(t *testing.T) {
	t.Parallel()
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		pollWokenByStore(t, newFixture(t))
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		pollWokenByStore(t, newFixtureOn(t, tokenstest.NewOn(t, testenv.PostgresDB(t))))
	})
}

func pollWokenByStore(t *testing.T, f *fixture) {
	ctx := t.Context()
	c := f.cfg
	c.PollInterval = time.Minute
	slow, _ := f.start(t, c)
	// woken revokes w's certificate in the store and waits for slow to
	// wake its waiters (long polls, pushers).
	woken := func(w *tokenstest.Workload, reason string) time.Duration {
		t.Helper()
		changed := ssf.Changes(slow)
		began := time.Now()
		if _, err := f.env.Store.RevokeCertificate(ctx, device.Serial(w.Cert), reason, began); err != nil {
			t.Fatal(err)
		}
		select {
		case <-changed:
			return time.Since(began)
		case <-time.After(time.Second):
			t.Fatalf("%s: the transmitter not woken within a second of the revocation", reason)
			return 0
		}
	}
	// The first is seen either notified or by the read that follows the
	// transmitter's subscription: once it is, the subscription is there.
	woken(f.other, store.ReasonAttestationFailed)
	took := woken(f.stranger, store.ReasonPolicyChanged)
	t.Logf("woken %v after the revocation", took)
}
