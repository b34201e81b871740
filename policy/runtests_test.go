package policy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRunTestsDev(t *testing.T) {
	r, err := RunTests("testdata/dev")
	if err != nil {
		t.Fatal(err)
	}
	if !r.Passed() || len(r.Results) != 17 {
		t.Fatalf("%d results, passed = %v:\n%s", len(r.Results), r.Passed(), r)
	}
	if r.Version != mustLoad(t, "testdata/dev").Version() || r.Dir != "testdata/dev" {
		t.Errorf("Report = {Dir: %q, Version: %q}", r.Dir, r.Version)
	}
	first := r.Results[0]
	if first.File != "testdata/dev/tests/enroll.yaml" || first.Case != "dev device enrolls as a workload" || !first.Decision.Allowed {
		t.Errorf("first result = %+v", first)
	}
	wantLast := "policy set " + r.Version + " in testdata/dev: 17 passed, 0 failed\n"
	if !strings.HasSuffix(r.String(), wantLast) {
		t.Errorf("String() ends\n%s\nwant\n%s", r.String(), wantLast)
	}
}

const devDeviceYAML = `
        ek_hash: sha256:fceb2dfed7c53da57b8c93216b0904fc1aebe6c42b70f3b3299e6ce06303e474
        ak_hash: sha256:1e55693720cab0652828c76abfd5e3cbfda0cd401fdcbc6229918f7b7599ddb8
        secure_boot: true`

// wrongExpectations has one passing case and two with wrong expectations.
const wrongExpectations = `cases:
  - name: passes
    enroll:
      identity: spiffe://sigil.test/workload/web
      device:` + devDeviceYAML + `
    expect: allow
  - name: wrong verdict
    enroll:
      identity: spiffe://sigil.test/admin
      device:` + devDeviceYAML + `
    expect: allow
  - name: wrong policies
    enroll:
      identity: spiffe://sigil.test/workload/web
      device:` + devDeviceYAML + `
    expect: allow
    policies: [some-other-policy]
`

func TestRunTestsReportsFailures(t *testing.T) {
	dir := copyDir(t, "testdata/dev")
	file := filepath.Join(dir, "tests", "wrong.yaml")
	writeFile(t, file, wrongExpectations)
	r, err := RunTests(dir)
	if err != nil {
		t.Fatal(err)
	}
	v := r.Version
	want := "PASS " + file + ": passes\n" +
		"FAIL " + file + ": wrong verdict: want allow, got deny: no policy permits this request (policy set " + v + "; evaluated 6 policies)\n" +
		"FAIL " + file + `: wrong policies: want policies ["some-other-policy"], got ["dev-enroll-workload"]: allowed by policy "dev-enroll-workload" (policy set ` + v + ")\n" +
		"policy set " + v + " in " + dir + ": 1 passed, 2 failed\n"
	if r.String() != want {
		t.Errorf("String() =\n%s\nwant\n%s", r, want)
	}
	if r.Passed() || len(r.Failures()) != 2 || r.Failures()[0].Case != "wrong verdict" {
		t.Errorf("Passed() = %v, Failures() = %+v", r.Passed(), r.Failures())
	}
}

func TestRunTestsErrors(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string)
		want  string // DIR stands for the policy directory
	}{
		{
			name:  "no tests directory",
			setup: func(t *testing.T, dir string) {},
			want:  "policy: test DIR: no test files (*.yaml) in DIR/tests",
		},
		{
			name: "malformed test file",
			setup: func(t *testing.T, dir string) {
				writeFile(t, filepath.Join(dir, "tests", "a.yml"), "cases:\n  - name: x\n    expected: allow\n")
			},
			want: `policy: test DIR: DIR/tests/a.yml: [3:5] unknown field "expected"`,
		},
		{
			name: "policy set does not load",
			setup: func(t *testing.T, dir string) {
				writeFile(t, filepath.Join(dir, "bad.cedar"), "@id(\"x\") permit (")
			},
			want: "policy: load DIR: DIR/bad.cedar:1:18: syntax error at end of input: exact got  want principal",
		},
		{
			name: "test file too large",
			setup: func(t *testing.T, dir string) {
				writeFile(t, filepath.Join(dir, "tests", "big.yaml"), "# "+strings.Repeat("x", maxTestFileSize))
			},
			want: "policy: test DIR: DIR/tests/big.yaml: larger than 1048576 bytes",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := copyDir(t, "testdata/dev")
			tt.setup(t, dir)
			_, err := RunTests(dir)
			want := strings.ReplaceAll(tt.want, "DIR", dir)
			if err == nil || err.Error() != want {
				t.Errorf("error =\n%v\nwant\n%s", err, want)
			}
		})
	}
}

func TestParseTestFileErrors(t *testing.T) {
	device := "{ek_hash: sha256:fceb2dfed7c53da57b8c93216b0904fc1aebe6c42b70f3b3299e6ce06303e474, " +
		"ak_hash: sha256:1e55693720cab0652828c76abfd5e3cbfda0cd401fdcbc6229918f7b7599ddb8}"
	enroll := "{identity: spiffe://sigil.test/workload/web, device: " + device + "}"
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"empty", "", "no cases"},
		{"no cases", "cases: []", "no cases"},
		{"unknown top-level field", "tests: []", `[1:1] unknown field "tests"`},
		{"unknown case field", "cases:\n  - name: a\n    expected: allow\n", `[3:5] unknown field "expected"`},
		{"unknown device field", "cases:\n  - name: a\n    expect: allow\n    enroll: {device: {tpm: x}}\n", `[4:23] unknown field "tpm"`},
		{"duplicate key", "cases:\n  - name: a\n    name: b\n", `[3:5] mapping key "name" already defined at [2:5]`},
		{"tag go-yaml panics on", "cases: !foo\n", "malformed YAML: runtime error: invalid memory address or nil pointer dereference"},
		{"wrong type", "cases: {name: a}", "[1:8] mapping was used where sequence is expected"},
		{"missing name", "cases:\n  - expect: allow\n    enroll: " + enroll, `case 1 "": name is empty`},
		{"bad expect", "cases:\n  - name: a\n    expect: permit\n    enroll: " + enroll, `case 1 "a": expect is "permit", want "allow" or "deny"`},
		{"no request", "cases:\n  - name: a\n    expect: allow\n", `case 1 "a": no request: give enroll or token`},
		{"both requests", "cases:\n  - name: a\n    expect: allow\n    enroll: " + enroll + "\n    token: {}\n",
			`case 1 "a": both enroll and token given; a case has exactly one`},
		{"duplicate name", "cases:\n  - {name: a, expect: allow, enroll: " + enroll + "}\n  - {name: a, expect: deny, enroll: " + enroll + "}\n",
			`case 2 "a": duplicate name`},
		{"digest without prefix", "cases:\n  - {name: a, expect: allow, enroll: {device: {ek_hash: abc}}}",
			`case 1 "a": device: ek_hash: "abc": want "sha256:<hex>"`},
		{"short digest", "cases:\n  - {name: a, expect: allow, enroll: {device: {ek_hash: 'sha256:ab'}}}",
			`case 1 "a": device: ek_hash: "ab": want 64 lowercase hex digits`},
		{"upper-case digest", "cases:\n  - {name: a, expect: allow, enroll: {device: {ek_hash: 'sha256:" + strings.Repeat("AB", 32) + "'}}}",
			`case 1 "a": device: ek_hash: "` + strings.Repeat("AB", 32) + `": want 64 lowercase hex digits`},
		{"PCR without index", "cases:\n  - {name: a, expect: allow, enroll: {device: {ek_hash: 'sha256:" + strings.Repeat("ab", 32) +
			"', ak_hash: 'sha256:" + strings.Repeat("ab", 32) + "', pcrs: ['sha256:" + strings.Repeat("ab", 32) + "']}}}",
			`case 1 "a": device: pcrs: "sha256:` + strings.Repeat("ab", 32) + `": want "sha256:<index>:<hex>"`},
		{"PCR index out of range", "cases:\n  - {name: a, expect: allow, enroll: {device: {ek_hash: 'sha256:" + strings.Repeat("ab", 32) +
			"', ak_hash: 'sha256:" + strings.Repeat("ab", 32) + "', pcrs: ['sha256:24:" + strings.Repeat("ab", 32) + "']}}}",
			`case 1 "a": device: pcrs: "sha256:24:` + strings.Repeat("ab", 32) + `": index must be 0-23`},
		{"PCR index with leading zero", "cases:\n  - {name: a, expect: allow, enroll: {device: {ek_hash: 'sha256:" + strings.Repeat("ab", 32) +
			"', ak_hash: 'sha256:" + strings.Repeat("ab", 32) + "', pcrs: ['sha256:07:" + strings.Repeat("ab", 32) + "']}}}",
			`case 1 "a": device: pcrs: "sha256:07:` + strings.Repeat("ab", 32) + `": index must be 0-23`},
		{"PCR twice", "cases:\n  - {name: a, expect: allow, enroll: {device: {ek_hash: 'sha256:" + strings.Repeat("ab", 32) +
			"', ak_hash: 'sha256:" + strings.Repeat("ab", 32) + "', pcrs: ['sha256:7:" + strings.Repeat("ab", 32) + "', 'sha256:7:" + strings.Repeat("cd", 32) + "']}}}",
			`case 1 "a": device: pcrs: "sha256:7:` + strings.Repeat("cd", 32) + `": PCR 7 given twice`},
		{"invalid request", "cases:\n  - name: a\n    expect: allow\n    enroll: {identity: 'spiffe://sigil.test/', device: " + device + "}\n",
			`case 1 "a": invalid request: identity: invalid SPIFFE ID: "spiffe://sigil.test/": path cannot have a trailing slash`},
		{"invalid token request", "cases:\n  - name: a\n    expect: allow\n    token: {caller: {spiffe_id: spiffe://sigil.test/w, device: " + device + "}, audience: x, scopes: ['a b']}\n",
			`case 1 "a": invalid request: scopes: "a b" is not a valid scope`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseTestFile([]byte(tt.in))
			if err == nil || err.Error() != tt.want {
				t.Errorf("error =\n%v\nwant\n%s", err, tt.want)
			}
		})
	}
}

// The test file parser reads files a reviewer may not have written; it must
// not panic or hang, and whatever it accepts must be a valid request.
func FuzzParseTestFile(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*/tests/*.yaml")
	for _, p := range seeds {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(wrongExpectations))
	f.Add([]byte("cases:\n  - name: a\n    expect: allow\n    enroll: {device: {pcrs: ['sha256:7:00']}}\n"))
	f.Add([]byte("a: &a [x, x]\nb: &b [*a, *a]\ncases: *b\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cases, err := parseTestFile(data)
		if err != nil {
			return
		}
		if len(cases) == 0 {
			t.Fatal("no cases and no error")
		}
		for _, c := range cases {
			if strings.TrimSpace(c.name) == "" || c.req == nil {
				t.Fatalf("accepted case %+v", c)
			}
			if _, err := buildChecked(c.req, nil); err != nil {
				t.Fatalf("accepted invalid request: %v", err)
			}
		}
	})
}
