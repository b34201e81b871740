package policy

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// TestsDir is the directory, inside a policy directory, that holds its test
// files: YAML files (*.yaml or *.yml) of named cases, each a request and
// the expected decision. The package documentation describes the format.
const TestsDir = "tests"

// Report is the outcome of [RunTests].
type Report struct {
	Dir     string
	Version string   // version of the policy set tested
	Results []Result // every case, in file and case order
}

// Result is the outcome of one test case.
type Result struct {
	File     string // path of the test file
	Case     string // the case's name
	Decision Decision
	Failure  string // why the case failed; "" if it passed
}

// Passed reports whether the case met its expectations.
func (r Result) Passed() bool { return r.Failure == "" }

// Passed reports whether every case passed.
func (r Report) Passed() bool { return len(r.Failures()) == 0 }

// Failures returns the cases that failed.
func (r Report) Failures() []Result {
	var failed []Result
	for _, res := range r.Results {
		if !res.Passed() {
			failed = append(failed, res)
		}
	}
	return failed
}

// String is the report for a person: a line per case, then a summary.
func (r Report) String() string {
	var b strings.Builder
	for _, res := range r.Results {
		if res.Passed() {
			fmt.Fprintf(&b, "PASS %s: %s\n", res.File, res.Case)
		} else {
			fmt.Fprintf(&b, "FAIL %s: %s: %s\n", res.File, res.Case, res.Failure)
		}
	}
	failed := len(r.Failures())
	fmt.Fprintf(&b, "policy set %s in %s: %d passed, %d failed\n", r.Version, r.Dir, len(r.Results)-failed, failed)
	return b.String()
}

// RunTests loads the policy set in dir and runs the cases in dir/tests
// against it. A failing case is reported in the Report, not as an error;
// the error is for a set that does not load, no test files, or a test file
// that is malformed (unknown fields, invalid requests, duplicate names).
func RunTests(dir string) (Report, error) {
	s, err := Load(dir)
	if err != nil {
		return Report{}, err
	}
	paths, err := testFiles(dir)
	if err != nil {
		return Report{}, err
	}
	r := Report{Dir: dir, Version: s.Version()}
	for _, p := range paths {
		cases, err := readTestFile(p)
		if err != nil {
			return Report{}, fmt.Errorf("policy: test %s: %s: %w", dir, p, err)
		}
		for _, c := range cases {
			r.Results = append(r.Results, c.run(s, p))
		}
	}
	return r, nil
}

// testFiles lists dir/tests/*.yaml and *.yml, sorted.
func testFiles(dir string) ([]string, error) {
	var paths []string
	for _, pattern := range []string{"*.yaml", "*.yml"} {
		m, err := filepath.Glob(filepath.Join(dir, TestsDir, pattern))
		if err != nil {
			return nil, fmt.Errorf("policy: test %s: %w", dir, err)
		}
		paths = append(paths, m...)
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("policy: test %s: no test files (*.yaml) in %s", dir, filepath.Join(dir, TestsDir))
	}
	slices.Sort(paths)
	return paths, nil
}

func readTestFile(path string) ([]testCase, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxTestFileSize+1))
	if err != nil {
		return nil, err
	}
	return parseTestFile(data)
}

// run decides the case and compares with its expectations.
func (c testCase) run(s *Set, file string) Result {
	d := s.Decide(c.req)
	res := Result{File: file, Case: c.name, Decision: d}
	switch {
	case d.Allowed != c.allow:
		res.Failure = fmt.Sprintf("want %s, got %s: %s", verdict(c.allow), verdict(d.Allowed), d.Reason())
	case c.wantPolicies && !sameIDs(c.policies, d.PolicyIDs):
		res.Failure = fmt.Sprintf("want policies %q, got %q: %s", sorted(c.policies), d.PolicyIDs, d.Reason())
	}
	return res
}

func verdict(allow bool) string {
	if allow {
		return "allow"
	}
	return "deny"
}

// sameIDs compares policy id lists as sets; d.PolicyIDs is sorted.
func sameIDs(want, got []string) bool {
	return slices.Equal(slices.Compact(sorted(want)), got)
}

func sorted(ids []string) []string {
	s := slices.Clone(ids)
	slices.Sort(s)
	if s == nil {
		s = []string{}
	}
	return s
}
