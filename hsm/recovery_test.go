package hsm_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sigil-dev/sigil/hsm"
	"github.com/sigil-dev/sigil/testenv"
)

// TestRecoversWhenNetworkHSMComesBack puts the token behind a p11-kit
// server, kills the server, and checks that the same Key object fails fast
// with ErrUnavailable, then signs again once the server is back, without a
// new Open.
func TestRecoversWhenNetworkHSMComesBack(t *testing.T) {
	t.Parallel()
	srv := testenv.P11KitServer(t, testenv.SoftHSM(t))
	reg := prometheus.NewRegistry()
	h := open(t, srv.URI, hsm.WithMetrics(reg), hsm.WithTimeout(3*time.Second),
		hsm.WithReconnectBackoff(20*time.Millisecond, 200*time.Millisecond))
	k := generate(t, h, "remote", hsm.ES256)
	if err := signVerify(t, k, hsm.ES256, "before"); err != nil {
		t.Fatalf("sign through p11-kit: %v", err)
	}

	srv.Stop()
	for i := range 3 { // the loss, then attempts while the server is down
		start := time.Now()
		err := signVerify(t, k, hsm.ES256, "while down")
		if !errors.Is(err, hsm.ErrUnavailable) || time.Since(start) > 2*time.Second {
			t.Fatalf("sign %d with the server down: %v after %v; want ErrUnavailable, fast", i, err, time.Since(start))
		}
	}
	if err := h.Healthy(t.Context()); !errors.Is(err, hsm.ErrUnavailable) {
		t.Fatalf("Healthy with the server down: %v, want ErrUnavailable", err)
	}

	srv.Start()
	testenv.WaitForNil(t, 10*time.Second, "signing after the server is back", func() error { return signVerify(t, k, hsm.ES256, "after") })
	if err := h.Healthy(t.Context()); err != nil {
		t.Fatalf("Healthy after recovery: %v", err)
	}
	checkRecoveryMetrics(t, reg)
}

func checkRecoveryMetrics(t *testing.T, reg *prometheus.Registry) {
	t.Helper()
	unavailable := counter(t, reg, "sigil_hsm_sign_operations_total", map[string]string{"alg": "ES256", "result": "unavailable"})
	reconnected := counter(t, reg, "sigil_hsm_reconnects_total", map[string]string{"result": "ok"})
	if unavailable < 3 || reconnected != 1 {
		t.Fatalf("metrics: %v unavailable signs (want >= 3), %v successful reconnects (want 1)", unavailable, reconnected)
	}
}

// TestSignTimesOutOnAFrozenHSM freezes the p11-kit server (SIGSTOP) so
// calls hang: Sign and Healthy must give up after WithTimeout with
// ErrUnavailable, and work again once the server answers.
func TestSignTimesOutOnAFrozenHSM(t *testing.T) {
	t.Parallel()
	srv := testenv.P11KitServer(t, testenv.SoftHSM(t))
	const timeout = 300 * time.Millisecond
	h := open(t, srv.URI, hsm.WithTimeout(timeout))
	k := generate(t, h, "frozen", hsm.ES256)
	srv.Freeze()
	start := time.Now()
	err := signVerify(t, k, hsm.ES256, "frozen")
	if took := time.Since(start); !errors.Is(err, hsm.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) ||
		took < timeout || took > timeout+time.Second {
		t.Fatalf("sign on a frozen HSM: %v after %v; want ErrUnavailable after about %v", err, took, timeout)
	}
	if err := h.Healthy(t.Context()); !errors.Is(err, hsm.ErrUnavailable) {
		t.Fatalf("Healthy on a frozen HSM: %v, want ErrUnavailable", err)
	}
	srv.Thaw()
	testenv.WaitForNil(t, 10*time.Second, "signing after the thaw", func() error { return signVerify(t, k, hsm.ES256, "thawed") })
}
