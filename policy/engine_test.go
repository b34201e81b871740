package policy

import (
	"context"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sigil-dev/sigil/testenv"
)

// versions records what OnLoad reports.
type versions struct {
	mu    sync.Mutex
	list  []string
	sizes []int // how many policies each set holds
}

func (v *versions) add(s *Set) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.list = append(v.list, s.Version())
	v.sizes = append(v.sizes, s.Len())
}

func (v *versions) get() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return slices.Clone(v.list)
}

func devEnroll() EnrollRequest {
	return EnrollRequest{Device: devDevice(), Identity: "spiffe://sigil.test/workload/web"}
}

const unknownAttribute = "@id(\"bad\")\nforbid (principal is Sigil::Device, action, resource) when { principal.debug_mode };\n"

func TestNewEngineFailsOnBadSet(t *testing.T) {
	_, err := NewEngine(t.Context(), "testdata/unknown-attribute")
	want := "policy: load testdata/unknown-attribute: testdata/unknown-attribute/enroll.cedar:6:1: " +
		"policy \"no-debug-mode\": schema validation: attribute `debug_mode` on entity type `Sigil::Device` not found"
	if err == nil || err.Error() != want {
		t.Errorf("error = %v, want %s", err, want)
	}
}

func TestReload(t *testing.T) {
	dir := copyDir(t, "testdata/dev")
	var loaded versions
	var logs logBuffer
	e, err := NewEngine(t.Context(), dir, WithPollInterval(0), WithOnLoad(loaded.add),
		WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	if err != nil {
		t.Fatal(err)
	}
	v1 := e.Set().Version()
	if !slices.Equal(loaded.get(), []string{v1}) {
		t.Fatalf("OnLoad saw %q, want [%s]", loaded.get(), v1)
	}
	if loaded.sizes[0] != 6 {
		t.Fatalf("OnLoad saw a set of %d policies, want the 6 of testdata/dev", loaded.sizes[0])
	}

	t.Run("unchanged", func(t *testing.T) {
		if err := e.Reload(); err != nil {
			t.Fatal(err)
		}
		if got := loaded.get(); len(got) != 1 {
			t.Errorf("OnLoad called again for the same set: %q", got)
		}
	})

	t.Run("bad update keeps the old set", func(t *testing.T) {
		bad := filepath.Join(dir, "zz-bad.cedar")
		writeFile(t, bad, unknownAttribute)
		err := e.Reload()
		want := "policy: load " + dir + ": " + bad + ":1:1: policy \"bad\": schema validation: " +
			"attribute `debug_mode` on entity type `Sigil::Device` not found (policy set " + v1 + " stays active)"
		if err == nil || err.Error() != want {
			t.Fatalf("Reload error =\n%v\nwant\n%s", err, want)
		}
		if got := e.Set().Version(); got != v1 {
			t.Errorf("active version = %s, want the old %s", got, v1)
		}
		if d := e.Decide(devEnroll()); !d.Allowed || d.Version != v1 {
			t.Errorf("Decide after a bad reload = %s", d.Reason())
		}
		if !strings.Contains(logs.String(), `msg="policy set rejected, keeping the active one"`) {
			t.Errorf("rejection not logged:\n%s", logs.String())
		}
		writeFile(t, bad, "// fixed\n")
	})

	t.Run("good update", func(t *testing.T) {
		writeFile(t, filepath.Join(dir, "enroll.cedar"), "@id(\"only-renew\")\npermit (principal, action == Sigil::Action::\"renew\", resource);\n")
		if err := e.Reload(); err != nil {
			t.Fatal(err)
		}
		v2 := e.Set().Version()
		if v2 == v1 {
			t.Fatal("version did not change")
		}
		if got := loaded.get(); !slices.Equal(got, []string{v1, v2}) {
			t.Errorf("OnLoad saw %q, want [%s %s]", got, v1, v2)
		}
		if d := e.Decide(devEnroll()); d.Allowed || d.Version != v2 {
			t.Errorf("Decide after reload = %s, want a denial by %s", d.Reason(), v2)
		}
		if !strings.Contains(logs.String(), `msg="policy set loaded" dir=`+dir+` version=`+v2+` policies=5`) {
			t.Errorf("load not logged:\n%s", logs.String())
		}
	})
}

func TestAutoReload(t *testing.T) {
	dir := copyDir(t, "testdata/dev")
	var logs logBuffer
	var loaded versions
	e, err := NewEngine(t.Context(), dir, WithPollInterval(5*time.Millisecond), WithOnLoad(loaded.add),
		WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	if err != nil {
		t.Fatal(err)
	}
	v1 := e.Set().Version()

	bad := filepath.Join(dir, "zz-bad.cedar")
	writeFile(t, bad, unknownAttribute)
	testenv.WaitFor(t, 10*time.Second, "the rejection to be logged", func() bool {
		return strings.Contains(logs.String(), "policy set rejected")
	})
	for range 10 { // ten more polls of the unchanged directory
		if err := e.pollOnce(t.Context()); err != nil {
			t.Fatalf("poll: %v", err)
		}
	}
	if n := strings.Count(logs.String(), "policy set rejected"); n != 1 {
		t.Errorf("rejection logged %d times, want once:\n%s", n, logs.String())
	}
	if got := e.Set().Version(); got != v1 {
		t.Fatalf("bad set activated: %s", got)
	}

	writeFile(t, bad, "@id(\"deny-all-enroll\")\nforbid (principal, action == Sigil::Action::\"enroll\", resource);\n")
	testenv.WaitFor(t, 10*time.Second, "the new set", func() bool { return e.Set().Version() != v1 })
	d := e.Decide(devEnroll())
	if d.Allowed || !slices.Equal(d.PolicyIDs, []string{"deny-all-enroll"}) {
		t.Errorf("Decide = %s, want a denial by deny-all-enroll", d.Reason())
	}
	if got := loaded.get(); len(got) != 2 || got[1] != e.Set().Version() {
		t.Errorf("OnLoad saw %q", got)
	}
}

// It runs in a synctest bubble: time.Sleep there advances a fake clock once
// every goroutine is blocked, so fifty poll intervals pass without waiting
// and the watcher, had it kept running, would have polled in them.
func TestAutoReloadStopsWithContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := copyDir(t, "testdata/dev")
		ctx, cancel := context.WithCancel(t.Context())
		e, err := NewEngine(ctx, dir, WithPollInterval(time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		v1 := e.Set().Version()
		cancel()
		synctest.Wait() // the watcher has seen ctx.Done
		writeFile(t, filepath.Join(dir, "more.cedar"), "// new\n")
		time.Sleep(50 * time.Millisecond) // fake time: fifty poll intervals
		synctest.Wait()
		if got := e.Set().Version(); got != v1 {
			t.Errorf("polling continued after ctx was done: version %s", got)
		}
		if err := e.Reload(); err != nil || e.Set().Version() == v1 {
			t.Errorf("Reload after ctx was done: err %v, version %s", err, e.Set().Version())
		}
	})
}

// Decisions made while sets are swapped always come from one whole set:
// the version a decision names matches its outcome.
func TestConcurrentDecideDuringReload(t *testing.T) {
	dir := copyDir(t, "testdata/dev")
	e, err := NewEngine(t.Context(), dir, WithPollInterval(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	forbid := filepath.Join(dir, "zz-forbid.cedar")
	writeFile(t, forbid, "") // the file exists, empty, in the allowing version
	if err := e.Reload(); err != nil {
		t.Fatal(err)
	}
	allowV := e.Set().Version()
	writeFile(t, forbid, "@id(\"stop\")\nforbid (principal, action, resource);\n")
	if err := e.Reload(); err != nil {
		t.Fatal(err)
	}
	denyV := e.Set().Version()

	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for range 8 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				d := e.Decide(devEnroll())
				if (d.Version == allowV) != d.Allowed || (d.Version != allowV && d.Version != denyV) {
					errs <- d.Reason()
					return
				}
			}
		})
	}
	for i := range 50 {
		content := "@id(\"stop\")\nforbid (principal, action, resource);\n"
		if i%2 == 1 {
			content = ""
		}
		writeFile(t, forbid, content)
		if err := e.Reload(); err != nil {
			t.Errorf("Reload: %v", err)
		}
	}
	close(stop)
	wg.Wait()
	close(errs)
	for r := range errs {
		t.Errorf("inconsistent decision: %s", r)
	}
}
