package sqlite

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sigil-dev/sigil/testenv"
)

// TestMetrics: the store's metrics count its commits and checkpoints as
// they happen, and a checkpoint that fails shows in
// sigil_sqlite_checkpoint_failures_total.
func TestMetrics(t *testing.T) {
	t.Parallel()
	cfg := checkpointConfig{frames: 1, restart: 1, idle: time.Hour}
	st, err := Open(t.Context(), filepath.Join(t.TempDir(), "sigil.db")+"?_pragma=synchronous(OFF)", withCheckpoints(cfg))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	s := st.(*sqliteStore)
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(s); err != nil {
		t.Fatal(err)
	}
	value := func(name, labels string) float64 {
		t.Helper()
		want := fmt.Sprintf("%s%s ", name, labels)
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				got := mf.GetName()
				if len(m.GetLabel()) > 0 {
					got += fmt.Sprintf(`{%s="%s"}`, m.GetLabel()[0].GetName(), m.GetLabel()[0].GetValue())
				}
				if got+" " == want {
					if c := m.GetCounter(); c != nil {
						return c.GetValue()
					}
					return m.GetGauge().GetValue()
				}
			}
		}
		t.Fatalf("no metric %s%s", name, labels)
		return 0
	}
	for i := range 20 {
		name := fmt.Sprintf("e%d", i)
		if _, err := s.AppendAudit(t.Context(), testEntry(name, "jti:"+name)); err != nil {
			t.Fatal(err)
		}
	}
	if n := value("sigil_sqlite_commits_total", `{how="alone"}`) + value("sigil_sqlite_commits_total", `{how="batch"}`); n < 1 {
		t.Errorf("%v commits after 20 appends", n)
	}
	testenv.WaitFor(t, 10*time.Second, "a held checkpoint counted", func() bool {
		return value("sigil_sqlite_checkpoints_total", `{kind="held"}`) > 0 && value("sigil_sqlite_checkpoints_total", `{kind="passive"}`) > 0
	})
	if f := value("sigil_sqlite_checkpoint_failures_total", ""); f != 0 {
		t.Fatalf("%v failed checkpoints before any could fail", f)
	}
	s.ck.conn.Close() // its next checkpoint fails
	if _, err := s.ck.run(t.Context(), "PASSIVE"); err == nil {
		t.Fatal("a checkpoint on a closed connection succeeded")
	}
	if f := value("sigil_sqlite_checkpoint_failures_total", ""); f < 1 {
		t.Errorf("sigil_sqlite_checkpoint_failures_total = %v after a failed checkpoint", f)
	}
	mfs, err := reg.Gather() // the pedantic registry checks them against Describe
	series := 0
	for _, mf := range mfs {
		series += len(mf.GetMetric())
	}
	if err != nil || series != 8 {
		t.Errorf("%d series (%v), want 8", series, err)
	}
}
