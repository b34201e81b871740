package policy

import (
	"slices"
	"strings"
	"testing"
)

type decideTest struct {
	name      string
	req       Request
	allowed   bool
	policyIDs []string
	reason    string // VERSION stands for the set's version
}

func runDecideTests(t *testing.T, s *Set, tests []decideTest) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := s.Decide(tt.req)
			if d.Allowed != tt.allowed {
				t.Errorf("Allowed = %v, want %v (%s)", d.Allowed, tt.allowed, d.Reason())
			}
			if !slices.Equal(d.PolicyIDs, tt.policyIDs) {
				t.Errorf("PolicyIDs = %q, want %q", d.PolicyIDs, tt.policyIDs)
			}
			if d.Version != s.Version() {
				t.Errorf("Version = %q, want %q", d.Version, s.Version())
			}
			if want := withVersion(tt.reason, s); d.Reason() != want {
				t.Errorf("Reason() =\n%s\nwant\n%s", d.Reason(), want)
			}
		})
	}
}

func TestDecideEnroll(t *testing.T) {
	s := mustLoad(t, "testdata/dev")
	const (
		allowed = `allowed by policy "dev-enroll-workload" (policy set VERSION)`
		denied  = `no policy permits this request (policy set VERSION; evaluated 6 policies)`
	)
	noSecureBoot := devDevice()
	noSecureBoot.SecureBoot = false
	tests := []decideTest{
		{
			name:    "dev device enrolls as a workload",
			req:     EnrollRequest{Device: devDevice(), Identity: "spiffe://sigil.test/workload/web"},
			allowed: true, policyIDs: []string{"dev-enroll-workload"}, reason: allowed,
		},
		{
			name:    "explicit enroll action",
			req:     EnrollRequest{Action: Enroll, Device: devDevice(), Identity: "spiffe://sigil.test/workload/web"},
			allowed: true, policyIDs: []string{"dev-enroll-workload"}, reason: allowed,
		},
		{
			name:    "dev device renews",
			req:     EnrollRequest{Action: Renew, Device: devDevice(), Identity: "spiffe://sigil.test/workload/web"},
			allowed: true, policyIDs: []string{"dev-enroll-workload"}, reason: allowed,
		},
		{
			name: "dev device rebinds to a new AK",
			req: EnrollRequest{Action: Rebind, Device: devDevice(), Identity: "spiffe://sigil.test/workload/web",
				PreviousAKHash: sha("dev-ak-2")},
			allowed: true, policyIDs: []string{"dev-enroll-workload"}, reason: allowed,
		},
		{
			name:   "secure boot off",
			req:    EnrollRequest{Device: noSecureBoot, Identity: "spiffe://sigil.test/workload/web"},
			reason: denied,
		},
		{
			name:      "debug firmware matches the forbid",
			req:       EnrollRequest{Device: debugDevice(), Identity: "spiffe://sigil.test/workload/web"},
			policyIDs: []string{"no-debug-firmware"},
			reason:    `denied by forbid policy "no-debug-firmware" (policy set VERSION)`,
		},
		{
			name:      "debug firmware also blocks renewal",
			req:       EnrollRequest{Action: Renew, Device: debugDevice(), Identity: "spiffe://sigil.test/workload/web"},
			policyIDs: []string{"no-debug-firmware"},
			reason:    `denied by forbid policy "no-debug-firmware" (policy set VERSION)`,
		},
		{
			name:   "identity outside /workload/",
			req:    EnrollRequest{Device: devDevice(), Identity: "spiffe://sigil.test/admin/root"},
			reason: denied,
		},
		{
			name:   "identity nested below /workload/<name>",
			req:    EnrollRequest{Device: devDevice(), Identity: "spiffe://sigil.test/workload/web/admin"},
			reason: denied,
		},
		{
			name:   "path that only starts like /workload",
			req:    EnrollRequest{Device: devDevice(), Identity: "spiffe://sigil.test/workloads/web"},
			reason: denied,
		},
		{
			name:   "other trust domain",
			req:    EnrollRequest{Device: devDevice(), Identity: "spiffe://example.org/workload/web"},
			reason: denied,
		},
		{
			name:   "trust domain with sigil.test as suffix",
			req:    EnrollRequest{Device: devDevice(), Identity: "spiffe://evil-sigil.test/workload/web"},
			reason: denied,
		},
	}
	runDecideTests(t, s, tests)
}

func TestDecidePinnedPCRs(t *testing.T) {
	s := mustLoad(t, "testdata/pinned-pcrs")
	const denied = `no policy permits this request (policy set VERSION; evaluated 1 policy)`
	wrongPCR7 := devDevice()
	wrongPCR7.PCRs = map[int][]byte{0: sha("bootloader"), 7: sha("evil-kernel")}
	missingPCR7 := devDevice()
	missingPCR7.PCRs = map[int][]byte{0: sha("bootloader")}
	swapped := devDevice()
	swapped.PCRs = map[int][]byte{0: sha("kernel"), 7: sha("bootloader")}
	noSecureBoot := devDevice()
	noSecureBoot.SecureBoot = false
	extraPCRs := devDevice()
	extraPCRs.PCRs[23] = sha("anything")
	id := "spiffe://sigil.test/workload/web"
	tests := []decideTest{
		{
			name: "measurements match", req: EnrollRequest{Device: devDevice(), Identity: id},
			allowed: true, policyIDs: []string{"enroll-measured-boot"},
			reason: `allowed by policy "enroll-measured-boot" (policy set VERSION)`,
		},
		{
			name: "unpinned PCRs may hold anything", req: EnrollRequest{Device: extraPCRs, Identity: id},
			allowed: true, policyIDs: []string{"enroll-measured-boot"},
			reason: `allowed by policy "enroll-measured-boot" (policy set VERSION)`,
		},
		{name: "PCR 7 differs", req: EnrollRequest{Device: wrongPCR7, Identity: id}, reason: denied},
		{name: "PCR 7 not quoted", req: EnrollRequest{Device: missingPCR7, Identity: id}, reason: denied},
		{name: "values in the wrong PCRs", req: EnrollRequest{Device: swapped, Identity: id}, reason: denied},
		{name: "secure boot off", req: EnrollRequest{Device: noSecureBoot, Identity: id}, reason: denied},
	}
	runDecideTests(t, s, tests)
}

func TestDecideToken(t *testing.T) {
	s := mustLoad(t, "testdata/dev")
	const (
		tokenAllowed    = `allowed by policy "dev-token-workloads" (policy set VERSION)`
		exchangeAllowed = `allowed by policy "dev-exchange-workloads" (policy set VERSION)`
		denied          = `no policy permits this request (policy set VERSION; evaluated 6 policies)`
		db              = "spiffe://sigil.test/workload/db"
	)
	subject := func(scopes []string, actors ...string) *Subject {
		return &Subject{Issuer: "https://idp.sigil.test", Sub: "alice", Scopes: scopes, ActChain: actors}
	}
	otherTD := devCaller()
	otherTD.SPIFFEID = "spiffe://example.org/workload/web"
	onDebug := devCaller()
	onDebug.Device = debugDevice()
	rw := []string{"read", "write"}
	tests := []decideTest{
		{
			name: "token for another workload", req: TokenRequest{Caller: devCaller(), Audience: db, Scopes: rw},
			allowed: true, policyIDs: []string{"dev-token-workloads"}, reason: tokenAllowed,
		},
		{
			name: "token without scopes", req: TokenRequest{Caller: devCaller(), Audience: db},
			allowed: true, policyIDs: []string{"dev-token-workloads"}, reason: tokenAllowed,
		},
		{
			name:   "audience not a SPIFFE ID",
			req:    TokenRequest{Caller: devCaller(), Audience: "https://api.example.org"},
			reason: denied,
		},
		{
			name:   "audience in another trust domain",
			req:    TokenRequest{Caller: devCaller(), Audience: "spiffe://example.org/workload/db"},
			reason: denied,
		},
		{
			name:   "audience outside /workload/",
			req:    TokenRequest{Caller: devCaller(), Audience: "spiffe://sigil.test/admin"},
			reason: denied,
		},
		{name: "caller in another trust domain", req: TokenRequest{Caller: otherTD, Audience: db}, reason: denied},
		{
			name: "caller on debug firmware", req: TokenRequest{Caller: onDebug, Audience: db},
			policyIDs: []string{"no-debug-firmware-tokens"},
			reason:    `denied by forbid policy "no-debug-firmware-tokens" (policy set VERSION)`,
		},
		{
			name:    "exchange: requested scopes a subset of the subject's",
			req:     TokenRequest{Caller: devCaller(), Audience: db, Scopes: []string{"read"}, Subject: subject(rw)},
			allowed: true, policyIDs: []string{"dev-exchange-workloads"}, reason: exchangeAllowed,
		},
		{
			name:    "exchange: requested scopes equal the subject's",
			req:     TokenRequest{Caller: devCaller(), Audience: db, Scopes: rw, Subject: subject(rw)},
			allowed: true, policyIDs: []string{"dev-exchange-workloads"}, reason: exchangeAllowed,
		},
		{
			name:    "exchange: no scopes requested",
			req:     TokenRequest{Caller: devCaller(), Audience: db, Subject: subject(rw)},
			allowed: true, policyIDs: []string{"dev-exchange-workloads"}, reason: exchangeAllowed,
		},
		{
			name:   "exchange: a scope the subject lacks",
			req:    TokenRequest{Caller: devCaller(), Audience: db, Scopes: []string{"read", "admin"}, Subject: subject(rw)},
			reason: denied,
		},
		{
			name:   "exchange: subject without scopes",
			req:    TokenRequest{Caller: devCaller(), Audience: db, Scopes: []string{"read"}, Subject: subject(nil)},
			reason: denied,
		},
		{
			name: "exchange: subject one actor deep",
			req: TokenRequest{Caller: devCaller(), Audience: db, Subject: subject(rw,
				"spiffe://sigil.test/workload/frontend")},
			allowed: true, policyIDs: []string{"dev-exchange-workloads"}, reason: exchangeAllowed,
		},
		{
			name: "exchange: subject two actors deep hits the depth limit",
			req: TokenRequest{Caller: devCaller(), Audience: db, Subject: subject(rw,
				"spiffe://sigil.test/workload/api", "spiffe://sigil.test/workload/frontend")},
			policyIDs: []string{"max-act-depth"},
			reason:    `denied by forbid policy "max-act-depth" (policy set VERSION)`,
		},
		{
			name: "exchange: the same actor twice still counts twice",
			req: TokenRequest{Caller: devCaller(), Audience: db, Subject: subject(rw,
				"spiffe://sigil.test/workload/api", "spiffe://sigil.test/workload/api")},
			policyIDs: []string{"max-act-depth"},
			reason:    `denied by forbid policy "max-act-depth" (policy set VERSION)`,
		},
		{
			name: "exchange: two forbids match",
			req: TokenRequest{Caller: onDebug, Audience: db, Subject: subject(rw,
				"spiffe://sigil.test/workload/api", "spiffe://sigil.test/workload/frontend")},
			policyIDs: []string{"max-act-depth", "no-debug-firmware-tokens"},
			reason:    `denied by forbid policies "max-act-depth", "no-debug-firmware-tokens" (policy set VERSION)`,
		},
	}
	runDecideTests(t, s, tests)
}

func TestDecideInvalidRequest(t *testing.T) {
	s := mustLoad(t, "testdata/dev")
	id := "spiffe://sigil.test/workload/web"
	shortEK := devDevice()
	shortEK.EKHash = shortEK.EKHash[:20]
	badPCR := devDevice()
	badPCR.PCRs = map[int][]byte{24: sha("x")}
	shortPCR := devDevice()
	shortPCR.PCRs = map[int][]byte{7: {1, 2, 3}}
	badEvent := devDevice()
	badEvent.EventDigests = [][]byte{sha("a"), nil}
	caller := devCaller()
	badCallerDevice := devCaller()
	badCallerDevice.Device.AKHash = nil
	tdOnly := devCaller()
	tdOnly.SPIFFEID = "spiffe://sigil.test"
	tests := []struct {
		name string
		req  Request
		want string
	}{
		{"nil request", nil, "invalid request: no request"},
		{"identity not a SPIFFE ID", EnrollRequest{Device: devDevice(), Identity: "web"},
			`invalid request: identity: invalid SPIFFE ID: "web": scheme is missing or invalid`},
		{"identity longer than the SPIFFE ID standard allows", EnrollRequest{Device: devDevice(), Identity: "spiffe://sigil.test/workload/" + strings.Repeat("x", 2971)},
			`invalid request: identity: invalid SPIFFE ID: 3000 bytes, longer than 2048`},
		{"identity with trailing slash", EnrollRequest{Device: devDevice(), Identity: "spiffe://sigil.test/workload/"},
			`invalid request: identity: invalid SPIFFE ID: "spiffe://sigil.test/workload/": path cannot have a trailing slash`},
		{"identity is a trust domain", EnrollRequest{Device: devDevice(), Identity: "spiffe://sigil.test"},
			`invalid request: identity: invalid SPIFFE ID: spiffe://sigil.test names no workload (empty path)`},
		{"short EK hash", EnrollRequest{Device: shortEK, Identity: id},
			"invalid request: device: EK hash: want 32 bytes (SHA-256), got 20"},
		{"PCR index out of range", EnrollRequest{Device: badPCR, Identity: id},
			"invalid request: device: PCR index 24 out of range 0-23"},
		{"short PCR value", EnrollRequest{Device: shortPCR, Identity: id},
			"invalid request: device: PCR 7: want 32 bytes (SHA-256), got 3"},
		{"empty event digest", EnrollRequest{Device: badEvent, Identity: id},
			"invalid request: device: event digests: entry 1: want 32 bytes (SHA-256), got 0"},
		{"unknown device action", EnrollRequest{Action: "delete", Device: devDevice(), Identity: id},
			`invalid request: unknown device action "delete": want "enroll", "renew" or "rebind"`},
		{"rebind without previous AK", EnrollRequest{Action: Rebind, Device: devDevice(), Identity: id},
			"invalid request: previous AK hash: want 32 bytes (SHA-256), got 0"},
		{"other holder not a digest", EnrollRequest{Device: devDevice(), Identity: id, OtherHolders: [][]byte{sha("x"), {1, 2}}},
			"invalid request: other holders: entry 1: want 32 bytes (SHA-256), got 2"},
		{"device identity not a SPIFFE ID", EnrollRequest{Device: devDevice(), Identity: id, DeviceIdentities: []string{id, "web"}},
			`invalid request: device identities: entry 1: invalid SPIFFE ID: "web": scheme is missing or invalid`},
		{"workload exe digest short", EnrollRequest{Device: devDevice(), Identity: id, Workload: &WorkloadFacts{Exe: "/usr/bin/x", ExeSHA256: []byte{1}}},
			"invalid request: workload: exe_sha256: want 32 bytes (SHA-256), got 1"},
		{"workload exe relative", EnrollRequest{Device: devDevice(), Identity: id, Workload: &WorkloadFacts{Exe: "x", ExeSHA256: sha("x")}},
			`invalid request: workload: exe "x": want an absolute path`},
		{"previous AK on renew", EnrollRequest{Action: Renew, Device: devDevice(), Identity: id, PreviousAKHash: sha("x")},
			`invalid request: previous AK hash given for action "renew"; it belongs to "rebind" only`},
		{"caller not a SPIFFE ID", TokenRequest{Caller: Caller{SPIFFEID: "web", Device: devDevice()}, Audience: id},
			`invalid request: caller: invalid SPIFFE ID: "web": scheme is missing or invalid`},
		{"caller longer than the SPIFFE ID standard allows", TokenRequest{Caller: Caller{SPIFFEID: "spiffe://sigil.test/workload/" + strings.Repeat("x", 2971), Device: devDevice()}, Audience: id},
			`invalid request: caller: invalid SPIFFE ID: 3000 bytes, longer than 2048`},
		{"caller is a trust domain", TokenRequest{Caller: tdOnly, Audience: id},
			`invalid request: caller: invalid SPIFFE ID: spiffe://sigil.test names no workload (empty path)`},
		{"caller device without AK", TokenRequest{Caller: badCallerDevice, Audience: id},
			"invalid request: caller device: AK hash: want 32 bytes (SHA-256), got 0"},
		{"empty audience", TokenRequest{Caller: caller},
			"invalid request: audience is empty"},
		{"audience with a space", TokenRequest{Caller: caller, Audience: "a b"},
			`invalid request: audience "a b": contains space or control character`},
		{"scope with a space", TokenRequest{Caller: caller, Audience: id, Scopes: []string{"read write"}},
			`invalid request: scopes: "read write" is not a valid scope`},
		{"empty scope", TokenRequest{Caller: caller, Audience: id, Scopes: []string{""}},
			`invalid request: scopes: "" is not a valid scope`},
		{"scope with a quote", TokenRequest{Caller: caller, Audience: id, Scopes: []string{`a"b`}},
			`invalid request: scopes: "a\"b" is not a valid scope`},
		{"subject without issuer", TokenRequest{Caller: caller, Audience: id, Subject: &Subject{Sub: "alice"}},
			"invalid request: subject: issuer is empty"},
		{"subject without sub", TokenRequest{Caller: caller, Audience: id, Subject: &Subject{Issuer: "https://idp"}},
			"invalid request: subject: sub is empty"},
		{"subject scope invalid", TokenRequest{Caller: caller, Audience: id, Subject: &Subject{Issuer: "i", Sub: "s", Scopes: []string{"a\x00"}}},
			`invalid request: subject: scopes: "a\x00" is not a valid scope`},
		{"empty actor", TokenRequest{Caller: caller, Audience: id, Subject: &Subject{Issuer: "i", Sub: "s", ActChain: []string{"a", ""}}},
			"invalid request: subject: act chain entry 1 is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := s.Decide(tt.req)
			if d.Allowed || d.PolicyIDs != nil || d.Evaluated != 0 {
				t.Errorf("Decide = %+v, want a denial without evaluation", d)
			}
			if !slices.Equal(d.Errors, []string{tt.want}) {
				t.Errorf("Errors = %q, want [%q]", d.Errors, tt.want)
			}
			want := "denied without evaluation (policy set " + s.Version() + "); " + tt.want
			if d.Reason() != want {
				t.Errorf("Reason() = %q, want %q", d.Reason(), want)
			}
		})
	}
}

// A forbid that errors must deny; Cedar on its own would skip it.
func TestDecideFailingForbidDenies(t *testing.T) {
	s := mustLoad(t, "testdata/forbid-error")
	req := func(actors ...string) TokenRequest {
		return TokenRequest{
			Caller:   devCaller(),
			Audience: "spiffe://sigil.test/workload/db",
			Subject:  &Subject{Issuer: "https://idp", Sub: "alice", ActChain: actors},
		}
	}
	t.Run("forbid evaluates", func(t *testing.T) {
		d := s.Decide(req())
		if !d.Allowed || !slices.Equal(d.PolicyIDs, []string{"allow-exchange"}) || d.Errors != nil {
			t.Errorf("Decide = %+v, want allowed by allow-exchange", d)
		}
	})
	t.Run("forbid overflows", func(t *testing.T) {
		d := s.Decide(req("spiffe://sigil.test/workload/api"))
		wantErr := `forbid policy "overflowing-forbid" at testdata/forbid-error/tokens.cedar:6:1 failed to evaluate, denying: ` +
			"integer overflow while attempting to add `1` with `9223372036854775807`"
		if d.Allowed || !slices.Equal(d.PolicyIDs, []string{"overflowing-forbid"}) {
			t.Errorf("Decide = %+v, want denied by overflowing-forbid", d)
		}
		if !slices.Equal(d.Errors, []string{wantErr}) {
			t.Errorf("Errors = %q, want [%q]", d.Errors, wantErr)
		}
		want := `denied by forbid policy "overflowing-forbid" (policy set ` + s.Version() + "); " + wantErr
		if d.Reason() != want {
			t.Errorf("Reason() =\n%s\nwant\n%s", d.Reason(), want)
		}
	})
}

func TestDecideSeveralPermits(t *testing.T) {
	dir := policyDir(t, map[string]string{"a.cedar": `
@id("b-second")
permit (principal, action == Sigil::Action::"enroll", resource) when { principal.secure_boot };
@id("a-first")
permit (principal, action == Sigil::Action::"enroll", resource);
`})
	s := mustLoad(t, dir)
	d := s.Decide(EnrollRequest{Device: devDevice(), Identity: "spiffe://sigil.test/workload/web"})
	want := `allowed by policies "a-first", "b-second" (policy set ` + s.Version() + ")"
	if !d.Allowed || d.Reason() != want || d.String() != want {
		t.Errorf("Decide = %+v, Reason() = %q, want %q", d, d.Reason(), want)
	}
}

// Every request the builders make conforms to the schema; Decide checks
// it, so a builder bug shows as an invalid request here.
func TestRequestsMatchSchema(t *testing.T) {
	s := mustLoad(t, "testdata/dev")
	minimal := DeviceFacts{EKHash: sha("ek"), AKHash: sha("ak")} // no PCRs, events or issuer
	reqs := []Request{
		EnrollRequest{Device: devDevice(), Identity: "spiffe://sigil.test/workload/web"},
		EnrollRequest{Action: Renew, Device: minimal, Identity: "spiffe://sigil.test/workload/web"},
		EnrollRequest{Action: Rebind, Device: devDevice(), Identity: "spiffe://sigil.test/x", PreviousAKHash: sha("old")},
		TokenRequest{Caller: devCaller(), Audience: "https://api.example.org", Scopes: []string{"a"}},
		TokenRequest{Caller: Caller{SPIFFEID: "spiffe://sigil.test/w", Device: minimal}, Audience: "spiffe://sigil.test/workload/db"},
		TokenRequest{Caller: devCaller(), Audience: "db", Subject: &Subject{Issuer: "i", Sub: "s"}},
	}
	for i, req := range reqs {
		if d := s.Decide(req); d.Errors != nil {
			t.Errorf("request %d: %v", i, d.Errors)
		}
	}
}
