package tokens_test

import (
	"testing"
	"time"

	"github.com/sigil-dev/sigil/internal/device"
	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/internal/tokens"
	"github.com/sigil-dev/sigil/internal/tokens/tokenstest"
	"github.com/sigil-dev/sigil/testenv"
)

// TestFeedWokenByEveryRevocation: with the feed polling once a minute
// only, every kind of revocation reaches a subscriber within the deadline
// (a second), on SQLite as on PostgreSQL: a token revoked through the
// service, and revocations the service knows nothing of, made in the
// store as the renewal path, the policy re-evaluation and `sigild device
// disable` make them (a certificate for a failed attestation, for a policy
// change, a device disabled). Only the store's notification
// (store.FeedNotifier) wakes the feed in time.
func TestFeedWokenByEveryRevocation(t *testing.T) {
	t.Parallel()
	slow := func(c *tokens.Config) { c.PollInterval = time.Minute }
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		feedWokenByEveryRevocation(t, tokenstest.New(t, slow))
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		feedWokenByEveryRevocation(t, tokenstest.NewOn(t, testenv.PostgresDB(t), slow))
	})
}

func feedWokenByEveryRevocation(t *testing.T, e *tokenstest.Env) {
	ctx := t.Context()
	client, aud, rs := e.Workload(t, "client"), e.Workload(t, "aud"), e.Workload(t, "rs")
	failed, changed := e.Workload(t, "failed"), e.Workload(t, "changed")
	sub, err := e.Service.Subscribe(ctx, rs.Cert, "")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	// reaches revokes, then reads the feed up to the store's head.
	reaches := func(kind string, revoke func() error) {
		t.Helper()
		began := time.Now()
		if err := revoke(); err != nil {
			t.Fatalf("%s: %v", kind, err)
		}
		head, err := e.Store.LatestRevocationSeq(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for ev := next(t, sub); ev.Seq < head; ev = next(t, sub) {
		}
		t.Logf("%s: on the feed %v after the revocation began", kind, time.Since(began))
	}
	tok := mustToken(t, e.Service, client, cc(aud.ID))
	reaches("token", func() error { return e.Service.Revoke(ctx, client.Cert, tok.AccessToken) })
	certificate := func(w *tokenstest.Workload, reason string) func() error {
		return func() error {
			_, err := e.Store.RevokeCertificate(ctx, device.Serial(w.Cert), reason, time.Now())
			return err
		}
	}
	reaches(store.ReasonAttestationFailed, certificate(failed, store.ReasonAttestationFailed))
	reaches(store.ReasonPolicyChanged, certificate(changed, store.ReasonPolicyChanged))
	reaches("device disabled", func() error {
		c, err := e.Store.Certificate(ctx, device.Serial(aud.Cert))
		if err != nil {
			return err
		}
		_, err = e.Store.SetDeviceStatus(ctx, c.EKHash, store.DeviceDisabled, time.Now())
		return err
	})
}
