package policy_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sigil-dev/sigil/policy"
)

// Compile gives a set sent over the network the version and validation
// Load gives the same files in a directory, and refuses names and sizes a
// directory could not hold.
func TestCompile(t *testing.T) {
	files, err := policy.Files("testdata/dev")
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := policy.Load("testdata/dev")
	if err != nil {
		t.Fatal(err)
	}
	got, err := policy.Compile("what-if", files)
	if err != nil || got.Version() != loaded.Version() || got.Len() != loaded.Len() {
		t.Fatalf("Compile = %v (%v); want version %s as Load", got, err, loaded.Version())
	}
	ok := []byte(`@id("p") permit (principal, action, resource);`)
	tests := []struct {
		name  string
		files map[string][]byte
		want  string
	}{
		{"no files", map[string][]byte{}, "0 files"},
		{"path in a name", map[string][]byte{"../x.cedar": ok}, `file name "../x.cedar"`},
		{"hidden file", map[string][]byte{".x.cedar": ok}, `file name ".x.cedar"`},
		{"not cedar", map[string][]byte{"x.txt": ok}, `file name "x.txt"`},
		{"too large", map[string][]byte{"x.cedar": []byte(strings.Repeat(" ", policy.MaxFileBytes+1))}, "bytes, at most"},
		{"invalid policy", map[string][]byte{"x.cedar": []byte(`permit (principal, action, resource);`)}, "@id"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := policy.Compile("what-if", tc.files); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Compile = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// Compile reads policy files an operator sends sigild (`sigil policy
// what-if`): it must not panic or hang, and a set it accepts decides.
func FuzzCompile(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*/*.cedar")
	for _, p := range seeds {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(filepath.Base(p), data)
	}
	f.Add("x.cedar", []byte(`@id("a") forbid (principal, action, resource) when { principal.event_digests.contains("sha256:00") };`))
	f.Fuzz(func(t *testing.T, name string, data []byte) {
		set, err := policy.Compile("fuzz", map[string][]byte{name: data})
		if err != nil {
			return
		}
		if !strings.HasPrefix(set.Version(), "sha256:") {
			t.Fatalf("version %q", set.Version())
		}
		d := set.Decide(policy.EnrollRequest{Identity: "spiffe://sigil.test/workload/a"})
		if d.Version != set.Version() {
			t.Fatalf("decision of version %q by set %q", d.Version, set.Version())
		}
	})
}
