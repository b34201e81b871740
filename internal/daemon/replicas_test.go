package daemon_test

import (
	"log/slog"
	"slices"
	"sync"
	"testing"

	"github.com/sigil-dev/sigil/audit"
	"github.com/sigil-dev/sigil/hsm"
	"github.com/sigil-dev/sigil/internal/config"
	"github.com/sigil-dev/sigil/internal/daemon"
	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/internal/store/backend"
	"github.com/sigil-dev/sigil/testenv"
)

// replica is one sigild's handles on the shared HSM token and database.
type replica struct {
	h  *hsm.HSM
	st store.Store
}

// newReplicas opens n handles on one SoftHSM token and one PostgreSQL
// database, as n replicas would, with cfg pointing at both.
func newReplicas(t *testing.T, n int) (*config.Config, []replica) {
	t.Helper()
	tok := testenv.SoftHSM(t)
	cfg := config.Defaults()
	cfg.TrustDomain = "sigil.test"
	cfg.HSM.URI = tok.URI
	cfg.Store = testenv.PostgresDB(t)
	cfg.TLS.IPAddresses = []string{"127.0.0.1"}
	rs := make([]replica, n)
	for i := range rs {
		var err error
		if rs[i].h, err = daemon.OpenHSM(t.Context(), cfg, slog.New(slog.DiscardHandler), nil); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { rs[i].h.Close() })
		if rs[i].st, err = backend.Open(t.Context(), cfg.Store); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { rs[i].st.Close() })
	}
	return cfg, rs
}

// TestConcurrentInitCreatesEachKeyOnce: `sigild init` on three replicas
// at once, over one HSM token and one database, creates each of the five
// keys once (one version of each on the token), logs five key.created
// entries, and every replica ends up with the same keys and certificates.
func TestConcurrentInitCreatesEachKeyOnce(t *testing.T) {
	cfg, rs := newReplicas(t, 3)
	pkis := make([]*daemon.PKI, len(rs))
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, r := range rs {
		wg.Go(func() {
			<-start
			p, err := daemon.Init(t.Context(), cfg, r.h, r.st, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Errorf("replica %d: Init: %v", i, err)
			}
			pkis[i] = p
		})
	}
	close(start)
	wg.Wait()
	if t.Failed() {
		return
	}
	keys, err := rs[0].h.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var labels []string
	for _, k := range keys {
		labels = append(labels, k.Label)
	}
	slices.Sort(labels)
	want := []string{cfg.Audit.KeyLabel + ".v1", cfg.CA.IssuerLabel + ".v1", cfg.CA.RootLabel + ".v1", cfg.TLS.KeyLabel + ".v1", cfg.Tokens.KeyLabel + ".v1"}
	slices.Sort(want)
	if !slices.Equal(labels, want) {
		t.Errorf("keys on the token: %v, want each once: %v", labels, want)
	}
	if kinds := loggedKinds(t, rs[0].st); !slices.Equal(kinds, slices.Repeat([]audit.Kind{audit.KeyCreated}, 5)) {
		t.Errorf("log = %v, want five key.created", kinds)
	}
	for i, p := range pkis[1:] {
		if !p.Root.Equal(pkis[0].Root) || !p.TLS.Equal(pkis[0].TLS) || p.TokenKey.KID() != pkis[0].TokenKey.KID() {
			t.Errorf("replica %d ended with other keys or certificates than replica 0", i+1)
		}
	}
}
