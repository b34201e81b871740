package policy

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/goccy/go-yaml"
)

// maxTestFileSize bounds a policy test file; real ones are a few KiB.
const maxTestFileSize = 1 << 20

// testFile is the YAML form of a policy test file, DIR/tests/*.yaml:
//
//	cases:
//	  - name: dev device enrolls as a workload
//	    enroll:                    # or token:, exactly one
//	      identity: spiffe://sigil.test/workload/web
//	      device: {ek_hash: "sha256:…", ak_hash: "sha256:…", secure_boot: true, …}
//	      other_holders: ["sha256:…"]  # optional: other devices holding the identity
//	      device_identities: ["spiffe://…"]  # optional: identities the device holds
//	      workload: {uid: 1001, gid: 1001, user: payments, exe: /usr/bin/payments,
//	                 exe_sha256: "sha256:…", cgroup: /system.slice/payments.service,
//	                 unit: payments.service}  # optional: a host agent's facts
//	    expect: allow              # or deny
//	    policies: [dev-enroll]     # optional: exactly these determining policies
type testFile struct {
	Cases []testCaseYAML `yaml:"cases"`
}

type testCaseYAML struct {
	Name     string      `yaml:"name"`
	Enroll   *enrollYAML `yaml:"enroll"`
	Token    *tokenYAML  `yaml:"token"`
	Expect   string      `yaml:"expect"`
	Policies *[]string   `yaml:"policies"`
}

type enrollYAML struct {
	Action         string        `yaml:"action"`
	Identity       string        `yaml:"identity"`
	Device         deviceYAML    `yaml:"device"`
	PreviousAKHash string        `yaml:"previous_ak_hash"`
	OtherHolders   []string      `yaml:"other_holders"`
	DeviceIDs      []string      `yaml:"device_identities"`
	Workload       *workloadYAML `yaml:"workload"`
}

type workloadYAML struct {
	UID       uint32 `yaml:"uid"`
	GID       uint32 `yaml:"gid"`
	User      string `yaml:"user"`
	Exe       string `yaml:"exe"`
	ExeSHA256 string `yaml:"exe_sha256"`
	Cgroup    string `yaml:"cgroup"`
	Unit      string `yaml:"unit"`
}

type deviceYAML struct {
	EKHash       string   `yaml:"ek_hash"`
	EKIssuer     string   `yaml:"ek_issuer"`
	AKHash       string   `yaml:"ak_hash"`
	SecureBoot   bool     `yaml:"secure_boot"`
	PCRs         []string `yaml:"pcrs"`
	EventDigests []string `yaml:"event_digests"`
}

type tokenYAML struct {
	Caller   callerYAML   `yaml:"caller"`
	Audience string       `yaml:"audience"`
	Scopes   []string     `yaml:"scopes"`
	Subject  *subjectYAML `yaml:"subject"`
}

type callerYAML struct {
	SPIFFEID      string     `yaml:"spiffe_id"`
	PolicyVersion string     `yaml:"policy_version"`
	Device        deviceYAML `yaml:"device"`
}

type subjectYAML struct {
	Issuer   string   `yaml:"issuer"`
	Sub      string   `yaml:"sub"`
	Scopes   []string `yaml:"scopes"`
	ActChain []string `yaml:"act_chain"`
}

// testCase is one parsed, well-formed case.
type testCase struct {
	name         string
	req          Request
	allow        bool
	policies     []string
	wantPolicies bool // policies was given, even if empty
}

// parseTestFile decodes a test file strictly (unknown and duplicate keys
// are errors) and checks that every case is a valid request.
func parseTestFile(data []byte) ([]testCase, error) {
	if len(data) > maxTestFileSize {
		return nil, fmt.Errorf("larger than %d bytes", maxTestFileSize)
	}
	var f testFile
	if err := decodeYAML(data, &f); err != nil {
		return nil, err
	}
	if len(f.Cases) == 0 {
		return nil, errors.New("no cases")
	}
	cases := make([]testCase, 0, len(f.Cases))
	seen := map[string]bool{}
	for i, c := range f.Cases {
		tc, err := c.parse()
		if err != nil {
			return nil, fmt.Errorf("case %d %q: %w", i+1, c.Name, err)
		}
		if seen[tc.name] {
			return nil, fmt.Errorf("case %d %q: duplicate name", i+1, c.Name)
		}
		seen[tc.name] = true
		cases = append(cases, tc)
	}
	return cases, nil
}

// decodeYAML decodes strictly. go-yaml v1.19.2 panics on some malformed
// input (a tag on a sequence, goccy/go-yaml#735); that is an error here.
func decodeYAML(data []byte, v any) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("malformed YAML: %v", r)
		}
	}()
	if err := yaml.UnmarshalWithOptions(data, v, yaml.Strict()); err != nil {
		return errors.New(firstLine(err.Error()))
	}
	return nil
}

// firstLine drops the source excerpt go-yaml appends to its errors.
func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

func (c testCaseYAML) parse() (testCase, error) {
	tc := testCase{name: c.Name}
	if strings.TrimSpace(c.Name) == "" {
		return tc, errors.New("name is empty")
	}
	switch c.Expect {
	case "allow", "deny":
		tc.allow = c.Expect == "allow"
	default:
		return tc, fmt.Errorf("expect is %q, want \"allow\" or \"deny\"", c.Expect)
	}
	if c.Policies != nil {
		tc.policies, tc.wantPolicies = *c.Policies, true
	}
	req, err := c.request()
	if err != nil {
		return tc, err
	}
	if _, err := buildChecked(req, nil); err != nil {
		return tc, fmt.Errorf("invalid request: %w", err)
	}
	tc.req = req
	return tc, nil
}

// request converts the one request form the case holds.
func (c testCaseYAML) request() (Request, error) {
	switch {
	case c.Enroll != nil && c.Token != nil:
		return nil, errors.New("both enroll and token given; a case has exactly one")
	case c.Enroll != nil:
		return c.Enroll.request()
	case c.Token != nil:
		return c.Token.request()
	}
	return nil, errors.New("no request: give enroll or token")
}

func (e *enrollYAML) request() (Request, error) {
	dev, err := e.Device.facts()
	if err != nil {
		return nil, fmt.Errorf("device: %w", err)
	}
	req := EnrollRequest{Action: DeviceAction(e.Action), Device: dev, Identity: e.Identity, DeviceIdentities: e.DeviceIDs}
	if w := e.Workload; w != nil {
		sum, err := parseDigest(w.ExeSHA256)
		if err != nil {
			return nil, fmt.Errorf("workload exe_sha256: %w", err)
		}
		req.Workload = &WorkloadFacts{UID: w.UID, GID: w.GID, User: w.User, Exe: w.Exe, ExeSHA256: sum, Cgroup: w.Cgroup, Unit: w.Unit}
	}
	for i, h := range e.OtherHolders {
		d, err := parseDigest(h)
		if err != nil {
			return nil, fmt.Errorf("other_holders[%d]: %w", i, err)
		}
		req.OtherHolders = append(req.OtherHolders, d)
	}
	if e.PreviousAKHash != "" {
		if req.PreviousAKHash, err = parseDigest(e.PreviousAKHash); err != nil {
			return nil, fmt.Errorf("previous_ak_hash: %w", err)
		}
	}
	return req, nil
}

func (t *tokenYAML) request() (Request, error) {
	dev, err := t.Caller.Device.facts()
	if err != nil {
		return nil, fmt.Errorf("caller device: %w", err)
	}
	req := TokenRequest{
		Caller:   Caller{SPIFFEID: t.Caller.SPIFFEID, PolicyVersion: t.Caller.PolicyVersion, Device: dev},
		Audience: t.Audience,
		Scopes:   t.Scopes,
	}
	if s := t.Subject; s != nil {
		req.Subject = &Subject{Issuer: s.Issuer, Sub: s.Sub, Scopes: s.Scopes, ActChain: s.ActChain}
	}
	return req, nil
}

// facts parses the Cedar string forms back into bytes, so test files read
// like the policies they test.
func (d deviceYAML) facts() (DeviceFacts, error) {
	f := DeviceFacts{EKIssuer: d.EKIssuer, SecureBoot: d.SecureBoot}
	var err error
	if f.EKHash, err = parseDigest(d.EKHash); err != nil {
		return f, fmt.Errorf("ek_hash: %w", err)
	}
	if f.AKHash, err = parseDigest(d.AKHash); err != nil {
		return f, fmt.Errorf("ak_hash: %w", err)
	}
	if f.PCRs, err = parsePCRs(d.PCRs); err != nil {
		return f, fmt.Errorf("pcrs: %w", err)
	}
	for i, s := range d.EventDigests {
		b, err := parseDigest(s)
		if err != nil {
			return f, fmt.Errorf("event_digests[%d]: %w", i, err)
		}
		f.EventDigests = append(f.EventDigests, b)
	}
	return f, nil
}

// parseDigest parses "sha256:<64 lowercase hex digits>".
func parseDigest(s string) ([]byte, error) {
	h, ok := strings.CutPrefix(s, "sha256:")
	if !ok {
		return nil, fmt.Errorf("%q: want \"sha256:<hex>\"", s)
	}
	return parseHex32(h)
}

func parseHex32(h string) ([]byte, error) {
	b, err := hex.DecodeString(h)
	if err != nil || len(b) != 32 || hex.EncodeToString(b) != h {
		return nil, fmt.Errorf("%q: want 64 lowercase hex digits", h)
	}
	return b, nil
}

// parsePCRs parses "sha256:<index>:<hex>" values, one per index.
func parsePCRs(vals []string) (map[int][]byte, error) {
	pcrs := make(map[int][]byte, len(vals))
	for _, s := range vals {
		rest, ok := strings.CutPrefix(s, "sha256:")
		idxText, h, ok2 := strings.Cut(rest, ":")
		if !ok || !ok2 {
			return nil, fmt.Errorf("%q: want \"sha256:<index>:<hex>\"", s)
		}
		idx, err := strconv.Atoi(idxText)
		if err != nil || idx < 0 || idx > maxPCR || strconv.Itoa(idx) != idxText {
			return nil, fmt.Errorf("%q: index must be 0-%d", s, maxPCR)
		}
		if _, dup := pcrs[idx]; dup {
			return nil, fmt.Errorf("%q: PCR %d given twice", s, idx)
		}
		if pcrs[idx], err = parseHex32(h); err != nil {
			return nil, fmt.Errorf("PCR %d: %w", idx, err)
		}
	}
	return pcrs, nil
}
