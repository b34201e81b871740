package daemon_test

import (
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/sigil-dev/sigil/api"
	"github.com/sigil-dev/sigil/audit"
	"github.com/sigil-dev/sigil/internal/config"
	"github.com/sigil-dev/sigil/internal/daemon"
	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/internal/store/storetest"
	"github.com/sigil-dev/sigil/testenv"
)

// TestWitnessedAcrossReplicas: two replicas on one database, with a real
// witness configured. Only the lease holder submits; both serve the
// checkpoint with the witness's cosignature. With the witness down, the
// log goes on publishing uncosigned checkpoints and the leader's lag
// metric says by how much; with it back, the latest is cosigned again.
func TestWitnessedAcrossReplicas(t *testing.T) {
	cfg, rs := newReplicas(t, 1)
	p, err := daemon.Init(t.Context(), cfg, rs[0].h, rs[0].st, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	v, err := daemon.LogVerifier(t.Context(), cfg, rs[0].st, p.AuditKey.Public())
	if err != nil {
		t.Fatal(err)
	}
	w := testenv.StartWitness(t, "witness.test", testenv.WitnessLog{Origin: v.Name(), PublicKey: v.WitnessKey()})
	wv, err := audit.ParseWitnessKey(w.Key)
	if err != nil {
		t.Fatal(err)
	}
	c := replicaConfig(cfg)
	c.Audit.Witnesses = []config.Witness{{URL: w.URL, Key: w.Key}}
	c.Audit.WitnessTimeout = 2 * time.Second
	roots := x509.NewCertPool()
	roots.AddCert(p.Root)
	a := serve(t, c, roots, p, rs[0].st)
	appendEntries(t, rs[0].st, 1)
	b := serve(t, c, roots, p, rs[0].st)
	size := appendEntries(t, rs[0].st, 3)
	for _, s := range []*serving{a, b} {
		for _, path := range []string{api.PathAuditCheckpoint, api.PathLogCheckpoint} {
			awaitWitnessed(t, s, path, v, wv, size)
		}
	}
	leader, follower := a, b
	if a.metric(t, "sigil_audit_checkpoint_leader") != 1 {
		leader, follower = b, a
	}
	id := fmt.Sprintf("%s+%08x", wv.Name(), wv.KeyHash())
	if n := submissions(t, leader, id, "cosigned"); n == 0 {
		t.Fatal("the leader counts no cosigned submission")
	}
	for _, res := range []string{"cosigned", "unreachable", "refused", "inconsistent", "other"} {
		if n := submissions(t, follower, id, res); n != 0 {
			t.Fatalf("the follower submitted: %s = %v", res, n)
		}
	}

	if err := w.Stop(); err != nil {
		t.Fatal(err)
	}
	down := appendEntries(t, rs[0].st, 2)
	lag := `sigil_audit_witness_lag_entries{witness="` + id + `"}`
	testenv.WaitFor(t, 20*time.Second, "the leader's witness lag to show the 2 entries", func() bool {
		return leader.labelled(t, lag) == 2
	})
	_, served := leader.get(t, api.PathAuditCheckpoint)
	if cp, err := audit.OpenCheckpoint([]byte(served), v); err != nil || cp.Size != down {
		t.Fatalf("served while the witness is down: %+v, %v; want size %d", cp, err, down)
	}
	if _, err := audit.RequireCosignatures([]byte(served), v, []note.Verifier{wv}, 1); !errors.Is(err, audit.ErrTooFewCosignatures) {
		t.Fatalf("cosignatures while the witness is down: %v", err)
	}
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	awaitWitnessed(t, follower, api.PathLogCheckpoint, v, wv, down)
	testenv.WaitFor(t, 20*time.Second, "the lag to be 0", func() bool { return leader.labelled(t, lag) == 0 })
}

// awaitWitnessed waits until s serves at path the checkpoint of size,
// cosigned by the witness wv.
func awaitWitnessed(t *testing.T, s *serving, path string, v *audit.Verifier, wv note.Verifier, size uint64) {
	t.Helper()
	testenv.WaitForNil(t, 20*time.Second, "a cosigned checkpoint of size "+strconv.FormatUint(size, 10)+" at "+path, func() error {
		_, body := s.get(t, path)
		cp, err := audit.OpenCheckpoint([]byte(body), v)
		if err != nil {
			return err
		}
		if cp.Size < size {
			return fmt.Errorf("served size %d", cp.Size)
		}
		_, err = audit.RequireCosignatures([]byte(body), v, []note.Verifier{wv}, 1)
		return err
	})
}

// submissions reads sigil_audit_witness_submissions_total for a witness
// and result.
func submissions(t *testing.T, s *serving, id, result string) float64 {
	t.Helper()
	return s.labelled(t, `sigil_audit_witness_submissions_total{result="`+result+`",witness="`+id+`"}`)
}

// labelled returns the value of the sample (name and labels, as
// /metrics writes them), failing if there is none.
func (s *serving) labelled(t *testing.T, sample string) float64 {
	t.Helper()
	_, body := s.get(t, "/metrics")
	for line := range strings.Lines(body) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), sample+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	t.Fatalf("no sample %s", sample)
	return 0
}

// TestRetentionPurgesExpiredTokens: a serving sigild deletes the records
// of tokens expired for longer than tokens.retention, keeps those expired
// more recently, and their audit entries stay.
func TestRetentionPurgesExpiredTokens(t *testing.T) {
	e := newEnv(t)
	p := e.init(t)
	roots := x509.NewCertPool()
	roots.AddCert(p.Root)
	old := storetest.Token("expired-long-ago", "")
	recent := storetest.Token("expired-recently", "")
	recent.IssuedAt, recent.ExpiresAt = time.Now().Add(-time.Hour).Truncate(time.Microsecond), time.Now().Add(-30*time.Minute).Truncate(time.Microsecond)
	for _, tok := range []store.Token{old, recent} {
		if err := storetest.InsertAudited(t.Context(), e.st, tok); err != nil {
			t.Fatal(err)
		}
	}
	serve(t, replicaConfig(e.cfg), roots, p, e.st) // tokens.retention: the default hour
	testenv.WaitFor(t, 20*time.Second, "the long expired token's record to be purged", func() bool {
		_, err := e.st.Token(t.Context(), old.JTI)
		return errors.Is(err, store.ErrNotFound)
	})
	if _, err := e.st.Token(t.Context(), recent.JTI); err != nil {
		t.Fatalf("the token expired within tokens.retention: %v, want it kept", err)
	}
	if _, err := e.st.AuditIndex(t.Context(), "jti:"+old.JTI); err != nil {
		t.Fatalf("the purged token's audit entry: %v", err)
	}
}
