package policy

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"testing"
)

// A gate holds a loaded set: it does not take effect, Reload says so
// (ErrHeld), and the set is offered again until the gate lets it through;
// OnActive sees each set that took effect. When the directory returns to
// the set in effect, the gate is offered that set, to release its hold.
func TestGate(t *testing.T) {
	dir := copyDir(t, "testdata/dev")
	var holding string // the version the gate holds
	var offered, active []string
	gate := func(_ context.Context, s *Set) error {
		offered = append(offered, s.Version())
		if s.Version() == holding {
			return errors.New("held for the test")
		}
		return nil
	}
	e, err := NewEngine(t.Context(), dir, WithPollInterval(0), WithGate(gate),
		WithOnActive(func(_ context.Context, s *Set) { active = append(active, s.Version()) }))
	if err != nil {
		t.Fatal(err)
	}
	v1 := e.Set().Version()
	path := filepath.Join(dir, "extra.cedar")
	writeFile(t, path, "@id(\"extra\")\nforbid (principal, action, resource is Sigil::Identity) when { resource.path == \"/workload/x\" };\n")
	next, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	holding = next.Version()
	if err := e.Reload(); !errors.Is(err, ErrHeld) || e.Set().Version() != v1 {
		t.Fatalf("Reload of a held set = %v, active %s; want ErrHeld and %s still active", err, e.Set().Version(), v1)
	}
	if err := e.pollOnce(t.Context()); err != nil || e.Set().Version() != v1 {
		t.Fatalf("poll of the held set = %v, active %s", err, e.Set().Version())
	}
	holding = ""
	if err := e.pollOnce(t.Context()); err != nil || e.Set().Version() != next.Version() {
		t.Fatalf("poll once released = %v, active %s; want %s", err, e.Set().Version(), next.Version())
	}
	if want := []string{v1, next.Version(), next.Version(), next.Version()}; !slices.Equal(offered, want) {
		t.Errorf("gate offered %v, want %v", offered, want)
	}
	if want := []string{v1, next.Version()}; !slices.Equal(active, want) {
		t.Errorf("OnActive saw %v, want %v", active, want)
	}

	t.Run("withdrawn", func(t *testing.T) {
		writeFile(t, path, "@id(\"extra\")\nforbid (principal, action, resource is Sigil::Identity) when { resource.path == \"/workload/y\" };\n")
		third, err := Load(dir)
		if err != nil {
			t.Fatal(err)
		}
		holding = third.Version()
		if err := e.Reload(); !errors.Is(err, ErrHeld) {
			t.Fatalf("Reload = %v, want ErrHeld", err)
		}
		writeFile(t, path, "@id(\"extra\")\nforbid (principal, action, resource is Sigil::Identity) when { resource.path == \"/workload/x\" };\n")
		offered = nil
		if err := e.Reload(); err != nil || e.Set().Version() != next.Version() {
			t.Fatalf("Reload of the set in effect = %v", err)
		}
		if !slices.Equal(offered, []string{next.Version()}) {
			t.Errorf("gate offered %v after the held set was withdrawn, want the set in effect", offered)
		}
	})
}
