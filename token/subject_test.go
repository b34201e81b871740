package token_test

import (
	"encoding/json"
	"html"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/sigil-dev/sigil/token"
)

const payments = "spiffe://sigil.test/workload/payments"

// subjectTricks are external subjects, each named after its trick; ok
// marks those CheckExternalSubject accepts.
var subjectTricks = []struct {
	name string
	sub  string
	ok   bool
}{
	{"plain", "alice", true},
	{"email with plus", "alice+tag@example.com", true},
	{"inner space", "Alice Smith", true},
	{"auth0-style pipe", "auth0|5f7c8ec7c33c6c004bbafe82", true},
	{"URL of another scheme", "https://idp.test/users/alice", true},
	{"255 bytes", strings.Repeat("a", 255), true},
	{"word spiffe without a colon", "spiffe-fan", true},

	{"empty", "", false},
	{"256 bytes", strings.Repeat("a", 256), false},
	{"SPIFFE ID", payments, false},
	{"leading space", " " + payments, false},
	{"trailing space", "alice ", false},
	{"only spaces", "  ", false},
	{"leading tab", "\t" + payments, false},
	{"newline", "alice\nspiffe", false},
	{"NUL", "\x00" + payments, false},
	{"DEL", "ali\x7fce", false},
	{"C1 next line", "\u0085" + payments, false},
	{"upper-case scheme", "SPIFFE://sigil.test/workload/payments", false},
	{"title-case scheme", "Spiffe://sigil.test/workload/payments", false},
	{"scheme without slashes", "spiffe:sigil.test", false},
	{"space before the colon", "spiffe ://sigil.test", false},
	{"space inside the scheme", "spif fe://sigil.test", false},
	{"plus inside the scheme", "spif+fe://sigil.test", false},
	{"scheme after a prefix", "user:" + payments, false},
	{"percent-encoded colon", "spiffe%3A%2F%2Fsigil.test", false},
	{"percent-encoded letter", "%73piffe://sigil.test", false},
	{"double percent-encoding", "%2573piffe://sigil.test", false},
	{"HTML entity", "&#115;piffe://sigil.test", false},
	{"backslash escape", `\u0073piffe://sigil.test`, false},
	{"fullwidth letters", "ｓｐｉｆｆｅ://sigil.test", false},
	{"fullwidth colon", "spiffe：//sigil.test", false},
	{"Cyrillic dze for s", "ѕpiffe://sigil.test", false},
	{"long s folds to s", "ſpiffe://sigil.test", false},
	{"Kelvin sign", "\u212a", false},
	{"zero-width space", "\u200b" + payments, false},
	{"soft hyphen", "spi\u00adffe://sigil.test", false},
	{"right-to-left override", "\u202ealice", false},
	{"non-breaking space", "\u00a0alice", false},
	{"replacement character", "alice\ufffd", false},
	{"invalid UTF-8", "alice\xff", false},
}

func TestCheckExternalSubject(t *testing.T) {
	for _, tt := range subjectTricks {
		t.Run(tt.name, func(t *testing.T) {
			err := token.CheckExternalSubject(tt.sub)
			if (err == nil) != tt.ok {
				t.Fatalf("CheckExternalSubject(%q) = %v, want ok=%v", tt.sub, err, tt.ok)
			}
			if err != nil && !strings.HasPrefix(err.Error(), "token: external subject ") {
				t.Fatalf("error %q does not say what failed", err)
			}
		})
	}
}

// TestSubjectKinds: a token names a workload or an IdP's user, never both
// and never neither, and only workloads act.
func TestSubjectKinds(t *testing.T) {
	tests := []struct {
		name           string
		claims         token.Claims
		workload, user bool
	}{
		{"workload", token.Claims{Subject: payments}, true, false},
		{"workload through workloads", token.Claims{Subject: payments, Actor: token.NewActor([]string{payments, payments})}, true, false},
		{"IdP user", token.Claims{Subject: "alice", SubjectIssuer: "https://idp.test", Actor: token.NewActor([]string{payments})}, false, true},
		{"user without its issuer", token.Claims{Subject: "alice"}, false, false},
		{"SPIFFE ID from an IdP", token.Claims{Subject: payments, SubjectIssuer: "https://idp.test"}, false, false},
		{"lookalike from an IdP", token.Claims{Subject: " " + payments, SubjectIssuer: "https://idp.test"}, false, false},
		{"upper-case scheme", token.Claims{Subject: "SPIFFE://sigil.test/workload/payments"}, false, false},
		{"SPIFFE ID with a space", token.Claims{Subject: payments + " x"}, false, false},
		{"trust domain without a workload path", token.Claims{Subject: "spiffe://sigil.test"}, false, false},
		{"upper-case trust domain", token.Claims{Subject: "spiffe://SIGIL.test/workload/payments"}, false, false},
		{"percent-encoded path", token.Claims{Subject: "spiffe://sigil.test/workload/pay%6Dents"}, false, false},
		{"SPIFFE ID over 2048 bytes", token.Claims{Subject: payments + "/" + strings.Repeat("a", token.MaxSPIFFEID)}, false, false},
		{"act naming a user", token.Claims{Subject: payments, Actor: token.NewActor([]string{"bob"})}, true, false},
		{"act nesting a lookalike", token.Claims{Subject: payments, Actor: token.NewActor([]string{payments, " " + payments})}, true, false},
		{"act level without sub", token.Claims{Subject: payments, Actor: &token.Actor{Actor: &token.Actor{Subject: payments}}}, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.claims
			if c.IsWorkload() != tt.workload || c.IsUser() != tt.user {
				t.Fatalf("IsWorkload %v, IsUser %v; want %v, %v", c.IsWorkload(), c.IsUser(), tt.workload, tt.user)
			}
			valid := (tt.workload || tt.user) && c.Actor.Valid()
			for _, a := range c.Actor.Chain() {
				valid = valid && token.IsSPIFFEID(a)
			}
			if err := c.CheckIdentities(); (err == nil) != valid {
				t.Fatalf("CheckIdentities = %v, want ok=%v", err, valid)
			}
		})
	}
}

// TestSubjectIDClaim: sub_id (RFC 9493) says in a standard claim which
// kind of subject sub is, and is absent when it is neither.
func TestSubjectIDClaim(t *testing.T) {
	tests := []struct {
		name   string
		claims token.Claims
		want   string
	}{
		{"workload", token.Claims{Subject: payments}, `{"format":"uri","uri":"` + payments + `"}`},
		{"IdP user", token.Claims{Subject: "alice", SubjectIssuer: "https://idp.test"}, `{"format":"iss_sub","iss":"https://idp.test","sub":"alice"}`},
		{"neither", token.Claims{Subject: "alice"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := json.Marshal(tt.claims)
			if err != nil {
				t.Fatal(err)
			}
			var m map[string]json.RawMessage
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatal(err)
			}
			if string(m["sub_id"]) != tt.want {
				t.Fatalf("sub_id = %s, want %s", m["sub_id"], tt.want)
			}
		})
	}
}

// FuzzCheckExternalSubject: an accepted external subject is printable
// ASCII without surrounding spaces, and no reading a resource server may
// make of it (trimming, URL, form, HTML or string unescaping, case
// folding, the SPIFFE and URL parsers) yields a SPIFFE ID.
func FuzzCheckExternalSubject(f *testing.F) {
	for _, tt := range subjectTricks {
		f.Add(tt.sub)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if token.CheckExternalSubject(s) != nil {
			return
		}
		if s != strings.TrimSpace(s) || len(s) > token.MaxExternalSubject {
			t.Fatalf("accepted %q: surrounding space or too long", s)
		}
		for i := 0; i < len(s); i++ {
			if s[i] < 0x20 || s[i] > 0x7e {
				t.Fatalf("accepted %q: byte %#x is not printable ASCII", s, s[i])
			}
		}
		for _, r := range readings(s) {
			if spiffeLike(r) {
				t.Fatalf("accepted %q, which reads as the SPIFFE ID %q", s, r)
			}
		}
	})
}

// readings are what lenient readers may make of s, applied up to twice.
func readings(s string) []string {
	steps := []func(string) string{
		strings.TrimSpace,
		strings.ToLower,
		html.UnescapeString,
		func(s string) string { return strings.Join(strings.Fields(s), "") },
		func(s string) string { u, _ := url.PathUnescape(s); return u },
		func(s string) string { u, _ := url.QueryUnescape(s); return u },
		func(s string) string { u, _ := strconv.Unquote(`"` + s + `"`); return u },
	}
	out := []string{s}
	for range 2 {
		for _, r := range out {
			for _, step := range steps {
				out = append(out, step(r))
			}
		}
	}
	return out
}

func spiffeLike(s string) bool {
	if _, err := spiffeid.FromString(s); err == nil {
		return true
	}
	if u, err := url.Parse(s); err == nil && strings.EqualFold(u.Scheme, "spiffe") {
		return true
	}
	return len(s) >= 7 && strings.EqualFold(s[:7], "spiffe:")
}
