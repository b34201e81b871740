package policy

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

func TestLoadRejects(t *testing.T) {
	tests := []struct {
		name     string
		dir      string
		want     string
		problems int
	}{
		{
			name: "bad syntax",
			dir:  "testdata/bad-syntax",
			want: "policy: load testdata/bad-syntax: testdata/bad-syntax/enroll.cedar:5:1: " +
				"syntax error at end of input: exact got ; want }",
			problems: 1,
		},
		{
			name: "unknown attribute",
			dir:  "testdata/unknown-attribute",
			want: "policy: load testdata/unknown-attribute: testdata/unknown-attribute/enroll.cedar:6:1: " +
				"policy \"no-debug-mode\": schema validation: attribute `debug_mode` on entity type `Sigil::Device` not found",
			problems: 1,
		},
		{
			name: "duplicate id",
			dir:  "testdata/duplicate-id",
			want: "policy: load testdata/duplicate-id: testdata/duplicate-id/renew.cedar:2:1: " +
				`policy "enroll-secure-boot": duplicate @id, already used at testdata/duplicate-id/enroll.cedar:1:1`,
			problems: 1,
		},
		{
			name: "missing id",
			dir:  "testdata/missing-id",
			want: "policy: load testdata/missing-id: testdata/missing-id/enroll.cedar:6:1: " +
				`no @id annotation; add @id("...") so decisions can name the policy`,
			problems: 1,
		},
		{
			name:     "missing directory",
			dir:      "testdata/no-such-dir",
			want:     "policy: load testdata/no-such-dir: open testdata/no-such-dir: no such file or directory",
			problems: 0,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Load(tt.dir)
			if err == nil {
				t.Fatalf("Load = %v, want error", s.Version())
			}
			if err.Error() != tt.want {
				t.Errorf("error =\n%s\nwant\n%s", err, tt.want)
			}
			if Check(tt.dir) == nil {
				t.Error("Check passed")
			}
			var le *LoadError
			if got := errors.As(err, &le); got != (tt.problems > 0) {
				t.Fatalf("errors.As(*LoadError) = %v", got)
			}
			if le != nil && len(le.Problems) != tt.problems {
				t.Errorf("%d problems, want %d", len(le.Problems), tt.problems)
			}
		})
	}
}

func TestLoadRejectsInline(t *testing.T) {
	permit := "permit (principal, action == Sigil::Action::\"enroll\", resource);\n"
	tests := []struct {
		name  string
		files map[string]string
		want  string // after "policy: load DIR: DIR/"
	}{
		{
			name:  "no policy files",
			files: map[string]string{"README": "x", ".hidden.cedar": "x"},
			want:  "no *.cedar files",
		},
		{
			name:  "invalid id",
			files: map[string]string{"a.cedar": `@id("has space")` + "\n" + permit},
			want:  `a.cedar:1:1: @id "has space" is not a valid policy id: use up to 128 letters, digits, '.', '_', ':' or '-', starting with a letter or digit`,
		},
		{
			name:  "empty id",
			files: map[string]string{"a.cedar": `@id("")` + "\n" + permit},
			want:  `a.cedar:1:1: @id "" is not a valid policy id: use up to 128 letters, digits, '.', '_', ':' or '-', starting with a letter or digit`,
		},
		{
			name:  "duplicate id in one file",
			files: map[string]string{"a.cedar": `@id("x")` + "\n" + permit + `@id("x")` + "\n" + permit},
			want:  `a.cedar:3:1: policy "x": duplicate @id, already used at DIR/a.cedar:1:1`,
		},
		{
			name:  "unknown action",
			files: map[string]string{"a.cedar": `@id("x") permit (principal, action == Sigil::Action::"fly", resource);`},
			want:  "a.cedar:1:1: policy \"x\": schema validation: unable to find an applicable action given the policy scope constraints; unrecognized action `Sigil::Action::\"fly\"`",
		},
		{
			name:  "unknown entity type",
			files: map[string]string{"a.cedar": `@id("x") permit (principal is Sigil::Robot, action, resource);`},
			want:  "a.cedar:1:1: policy \"x\": schema validation: unable to find an applicable action given the policy scope constraints; unrecognized entity type `Sigil::Robot`",
		},
		{
			name:  "context attribute of another action",
			files: map[string]string{"a.cedar": `@id("x") permit (principal, action == Sigil::Action::"token", resource) when { context.subject.act_depth < 2 };`},
			want:  "a.cedar:1:1: policy \"x\": schema validation: attribute `subject` in context for Sigil::Action::\"token\" not found",
		},
		{
			name:  "unguarded optional attribute",
			files: map[string]string{"a.cedar": `@id("x") permit (principal, action == Sigil::Action::"token", resource) when { resource.trust_domain == "a" };`},
			want:  "a.cedar:1:1: policy \"x\": schema validation: unable to guarantee safety of access to optional attribute `trust_domain` on entity type `Sigil::Audience`",
		},
		{
			name:  "type error",
			files: map[string]string{"a.cedar": `@id("x") permit (principal is Sigil::Device, action, resource) when { principal.secure_boot == "yes" };`},
			want:  "a.cedar:1:1: policy \"x\": schema validation: the types Bool and String are not compatible",
		},
		{
			name:  "unterminated string",
			files: map[string]string{"a.cedar": "@id(\"x\")\npermit (principal, action, resource)\nwhen { \"abc };\n"},
			want:  "a.cedar:3:8: syntax error: literal not terminated",
		},
		{
			name:  "unexpected token",
			files: map[string]string{"a.cedar": "@id(\"x\")\npermit (principal, action, resource)\nwhen { principal.ek_hash = };\n"},
			want:  `a.cedar:3:28: syntax error at "}": exact got = want }`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := policyDir(t, tt.files)
			_, err := Load(dir)
			want := "policy: load " + dir + ": " + filepath.Join(dir, tt.want)
			if tt.want == "no *.cedar files" {
				want = "policy: load " + dir + ": no *.cedar files"
			}
			want = regexp.MustCompile(`DIR`).ReplaceAllLiteralString(want, dir)
			if err == nil || err.Error() != want {
				t.Errorf("error =\n%v\nwant\n%s", err, want)
			}
		})
	}
}

// All problems of a set are reported, in file order, each findable with
// errors.As.
func TestLoadReportsEveryProblem(t *testing.T) {
	dir := policyDir(t, map[string]string{
		"a.cedar": "permit (principal, action == Sigil::Action::\"enroll\", resource);\n",
		"b.cedar": "@id(\"b\") permit (principal is Sigil::Device, action, resource) when { principal.nope };\n",
		"c.cedar": "@id(\"c\") permit (",
	})
	_, err := Load(dir)
	want := "policy: load " + dir + ": 3 problems" +
		"\n\t" + dir + `/a.cedar:1:1: no @id annotation; add @id("...") so decisions can name the policy` +
		"\n\t" + dir + "/b.cedar:1:1: policy \"b\": schema validation: attribute `nope` on entity type `Sigil::Device` not found" +
		"\n\t" + dir + `/c.cedar:1:18: syntax error at end of input: exact got  want principal`
	if err == nil || err.Error() != want {
		t.Fatalf("error =\n%v\nwant\n%s", err, want)
	}
	var p Problem
	if !errors.As(err, &p) || p.File != filepath.Join(dir, "a.cedar") || p.Line != 1 {
		t.Errorf("errors.As(Problem) = %+v", p)
	}
}

func TestVersion(t *testing.T) {
	base := mustLoad(t, "testdata/dev").Version()
	if !regexp.MustCompile(`^sha256:[0-9a-f]{64}$`).MatchString(base) {
		t.Fatalf("Version() = %q, want sha256:<64 hex>", base)
	}
	tests := []struct {
		name   string
		change func(t *testing.T, dir string)
		same   bool
	}{
		{"loaded again", func(*testing.T, string) {}, true},
		{"test files change", func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, "tests", "x.yaml"), "cases: []")
		}, true},
		{"other files change", func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, "README.md"), "notes")
			writeFile(t, filepath.Join(dir, ".enroll.cedar.swp"), "editor")
		}, true},
		{"a policy file changes", func(t *testing.T, dir string) {
			appendFile(t, filepath.Join(dir, "enroll.cedar"), "\n// comment\n")
		}, false},
		{"a policy file is renamed", func(t *testing.T, dir string) {
			if err := os.Rename(filepath.Join(dir, "enroll.cedar"), filepath.Join(dir, "device.cedar")); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"a policy file is added", func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, "empty.cedar"), "")
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := copyDir(t, "testdata/dev")
			tt.change(t, dir)
			got := mustLoad(t, dir).Version()
			if (got == base) != tt.same {
				t.Errorf("Version() = %s, base %s, want same = %v", got, base, tt.same)
			}
		})
	}
}

// Moving bytes between a file name and its content must change the version.
func TestVersionFraming(t *testing.T) {
	a := version([]file{{name: "a.cedar", data: []byte("x")}, {name: "b.cedar", data: nil}})
	b := version([]file{{name: "a.cedar", data: nil}, {name: "xb.cedar", data: nil}})
	c := version([]file{{name: "a.cedarx", data: nil}, {name: "b.cedar", data: nil}})
	if a == b || a == c || b == c {
		t.Errorf("versions collide: %s %s %s", a, b, c)
	}
}

func TestLoadUnreadableFile(t *testing.T) {
	dir := copyDir(t, "testdata/dev")
	if err := os.Mkdir(filepath.Join(dir, "sub.cedar"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(dir); err != nil {
		t.Errorf("a directory named *.cedar is not a policy file: %v", err)
	}
	if err := os.Symlink("missing", filepath.Join(dir, "dangling.cedar")); err != nil {
		t.Fatal(err)
	}
	_, err := Load(dir)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("error = %v, want fs.ErrNotExist", err)
	}
}

func appendFile(t *testing.T, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
}

func TestSchemaParses(t *testing.T) {
	if _, err := validator(); err != nil {
		t.Fatal(err)
	}
}
