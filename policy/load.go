package policy

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	cedar "github.com/cedar-policy/cedar-go"
	"github.com/cedar-policy/cedar-go/x/exp/ast"
	"github.com/cedar-policy/cedar-go/x/exp/schema/validate"
)

// Set is a loaded, schema-validated policy set. It is immutable and safe for
// concurrent use.
type Set struct {
	version  string
	policies *cedar.PolicySet
	sources  map[cedar.PolicyID]source
	callers  *callerCache   // saves work; no decision depends on it
	decided  *decisionCache // this set's TokenRequest decisions
}

// source records where a policy was defined, for messages.
type source struct {
	file   string
	line   int
	column int
}

// Load reads every *.cedar file directly in dir (not in subdirectories;
// names starting with "." are ignored), parses the policies and validates
// each against the schema. Every policy needs a unique @id("...")
// annotation. All problems found are reported together in a *[LoadError]
// (for a syntax error, only the first in its file).
func Load(dir string) (*Set, error) {
	files, err := readFiles(dir)
	if err != nil {
		return nil, err
	}
	return compile(dir, files)
}

// Limits on a policy set sent over the network ([Compile]).
const (
	MaxFiles     = 256
	MaxFileBytes = 256 << 10
)

// Compile builds the policy set of the named *.cedar file contents, as
// [Load] would from a directory holding exactly those files: the same
// version, the same validation. It is for a candidate set sent to sigild
// (`sigil policy what-if`): names must be plain *.cedar base names, at most
// MaxFiles of them, each at most MaxFileBytes; dir only labels problems.
func Compile(dir string, contents map[string][]byte) (*Set, error) {
	if len(contents) == 0 || len(contents) > MaxFiles {
		return nil, fmt.Errorf("policy: %d files, want 1 to %d", len(contents), MaxFiles)
	}
	files := make([]file, 0, len(contents))
	for name, data := range contents {
		if name != filepath.Base(name) || strings.HasPrefix(name, ".") || filepath.Ext(name) != ".cedar" || strings.ContainsAny(name, "/\\\x00") {
			return nil, fmt.Errorf("policy: file name %q: want a *.cedar base name", name)
		}
		if len(data) > MaxFileBytes {
			return nil, fmt.Errorf("policy: file %s: %d bytes, at most %d", name, len(data), MaxFileBytes)
		}
		files = append(files, file{name: name, data: data})
	}
	slices.SortFunc(files, func(a, b file) int { return strings.Compare(a.name, b.name) })
	return compile(dir, files)
}

// Files reads the policy files of dir as [Load] does, for [Compile]
// elsewhere: base name to content.
func Files(dir string) (map[string][]byte, error) {
	files, err := readFiles(dir)
	if err != nil {
		return nil, err
	}
	out := make(map[string][]byte, len(files))
	for _, f := range files {
		out[f.name] = f.data
	}
	return out, nil
}

// Check validates the policy set in dir as [Load] does, for
// "sigil policy check".
func Check(dir string) error {
	_, err := Load(dir)
	return err
}

// Version identifies the policy set by content: "sha256:" and the hex digest
// of its file names and contents. Equal files give equal versions.
func (s *Set) Version() string { return s.version }

// Len is the number of policies in the set.
func (s *Set) Len() int { return len(s.sources) }

// file is one policy file as read from disk.
type file struct {
	name string // base name
	data []byte
}

// readFiles returns the policy files of dir sorted by name.
func readFiles(dir string) ([]file, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("policy: load %s: %w", dir, err)
	}
	var files []file
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || strings.HasPrefix(name, ".") || filepath.Ext(name) != ".cedar" {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("policy: load %s: %w", dir, err)
		}
		files = append(files, file{name: name, data: data})
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("policy: load %s: no *.cedar files", dir)
	}
	return files, nil // os.ReadDir sorts by name
}

// version hashes the sorted files with length prefixes, so no two different
// file lists hash alike by concatenation.
func version(files []file) string {
	h := sha256.New()
	for _, f := range files {
		for _, b := range [][]byte{[]byte(f.name), f.data} {
			_ = binary.Write(h, binary.BigEndian, uint64(len(b)))
			h.Write(b)
		}
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// compile parses and validates files into a Set.
func compile(dir string, files []file) (*Set, error) {
	v, err := validator()
	if err != nil {
		return nil, err
	}
	s := &Set{
		version:  version(files),
		policies: cedar.NewPolicySet(),
		sources:  map[cedar.PolicyID]source{},
		callers:  newCallerCache(),
		decided:  newDecisionCache(),
	}
	var problems []Problem
	for _, f := range files {
		problems = append(problems, s.addFile(v, filepath.Join(dir, f.name), f.data)...)
	}
	if len(problems) > 0 {
		return nil, &LoadError{Dir: dir, Problems: problems}
	}
	return s, nil
}

// addFile parses one file and adds its valid policies to s.
func (s *Set) addFile(v *validate.Validator, path string, data []byte) []Problem {
	list, err := cedar.NewPolicyListFromBytes(path, data)
	if err != nil {
		return []Problem{syntaxProblem(path, err)}
	}
	var problems []Problem
	for _, p := range list {
		problems = append(problems, s.add(v, path, p)...)
	}
	return problems
}

// add validates one policy and adds it under its @id, or returns its
// problems.
func (s *Set) add(v *validate.Validator, path string, p *cedar.Policy) []Problem {
	pos := p.Position()
	src := source{file: path, line: pos.Line, column: pos.Column}
	id, idProblem := policyID(p)
	var problems []Problem
	if idProblem != "" {
		problems = append(problems, src.problem(id, idProblem))
	}
	if err := validatePolicy(v, (*ast.Policy)(p.AST())); err != nil {
		problems = append(problems, src.problem(id, "schema validation: "+err.Error()))
	}
	if prev, dup := s.sources[cedar.PolicyID(id)]; dup && idProblem == "" {
		problems = append(problems, src.problem(id, "duplicate @id, already used at "+prev.String()))
	} else if idProblem == "" {
		s.sources[cedar.PolicyID(id)] = src // invalid policies too, to find duplicates
	}
	if len(problems) > 0 {
		return problems // the set is discarded
	}
	s.policies.Add(cedar.PolicyID(id), p)
	return nil
}

// validID is what a policy id may look like: ids appear in logs, audit
// entries and messages, so they stay short and plain.
var validID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$`)

// policyID returns the @id of p, or a problem description.
func policyID(p *cedar.Policy) (string, string) {
	id, ok := p.Annotations()["id"]
	switch {
	case !ok:
		return "", `no @id annotation; add @id("...") so decisions can name the policy`
	case !validID.MatchString(string(id)):
		return "", fmt.Sprintf("@id %q is not a valid policy id: use up to 128 letters, digits, '.', '_', ':' or '-', starting with a letter or digit", string(id))
	}
	return string(id), ""
}

func (src source) String() string {
	return fmt.Sprintf("%s:%d:%d", src.file, src.line, src.column)
}

func (src source) problem(id, msg string) Problem {
	return Problem{File: src.file, Line: src.line, Column: src.column, PolicyID: id, Message: msg}
}

// inputPos finds the "<input>:LINE:COL" position cedar-go's parser puts in
// its errors; it does not know file names.
var inputPos = regexp.MustCompile(`(?: at )?<input>:(\d+):(\d+):? ?`)

// syntaxProblem turns a cedar-go parse error into a Problem with the file
// position, e.g. `syntax error at "}": exact got = want }`; cedar-go's
// "exact got X want Y" means it expected Y and found X.
func syntaxProblem(path string, err error) Problem {
	msg := strings.TrimPrefix(err.Error(), "parser error: ")
	pr := Problem{File: path}
	m := inputPos.FindStringSubmatchIndex(msg)
	if m == nil {
		pr.Message = "syntax error: " + msg
		return pr
	}
	pr.Line, _ = strconv.Atoi(msg[m[2]:m[3]])
	pr.Column, _ = strconv.Atoi(msg[m[4]:m[5]])
	rest := strings.TrimSpace(msg[:m[0]] + " " + msg[m[1]:])
	token, ok := strings.CutPrefix(rest, "parse error ") // `"<token>": <message>`
	switch {
	case !ok:
		pr.Message = "syntax error: " + rest
	case strings.HasPrefix(token, `"": `):
		pr.Message = "syntax error at end of input: " + strings.TrimPrefix(token, `"": `)
	default:
		pr.Message = "syntax error at " + token
	}
	return pr
}

// A Problem is one defect in a policy file: a syntax error, a policy the
// schema rejects, or a missing, malformed or duplicate @id.
type Problem struct {
	File     string // path of the .cedar file
	Line     int    // 1-based line of the policy or syntax error; 0 if unknown
	Column   int    // 1-based column; 0 if unknown
	PolicyID string // the policy's @id; "" if unknown or missing
	Message  string
}

func (p Problem) Error() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		fmt.Fprintf(&b, ":%d:%d", p.Line, p.Column)
	}
	b.WriteString(": ")
	if p.PolicyID != "" {
		fmt.Fprintf(&b, "policy %q: ", p.PolicyID)
	}
	b.WriteString(p.Message)
	return b.String()
}

// LoadError lists every problem found in a policy directory. Fix them all;
// the set is rejected as a whole.
type LoadError struct {
	Dir      string
	Problems []Problem
}

func (e *LoadError) Error() string {
	if len(e.Problems) == 1 {
		return fmt.Sprintf("policy: load %s: %v", e.Dir, e.Problems[0])
	}
	var b strings.Builder
	fmt.Fprintf(&b, "policy: load %s: %d problems", e.Dir, len(e.Problems))
	for _, p := range e.Problems {
		b.WriteString("\n\t")
		b.WriteString(p.Error())
	}
	return b.String()
}

// Unwrap returns the problems, so errors.As finds a [Problem].
func (e *LoadError) Unwrap() []error {
	errs := make([]error, len(e.Problems))
	for i, p := range e.Problems {
		errs[i] = p
	}
	return errs
}
