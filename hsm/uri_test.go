package hsm_test

import (
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/sigil-dev/sigil/hsm"
)

const mod = "module-path=/usr/lib/softhsm/libsofthsm2.so"

var uriTests = []struct {
	name string
	in   string
	want hsm.URI
	err  string // exact error text; "" means success
}{
	{name: "token-and-module", in: "pkcs11:token=sigil?" + mod,
		want: hsm.URI{Token: "sigil", ModulePath: "/usr/lib/softhsm/libsofthsm2.so"}},
	{name: "pin-source-file-uri", in: "pkcs11:token=sigil?" + mod + "&pin-source=file:/etc/sigil/pin",
		want: hsm.URI{Token: "sigil", ModulePath: "/usr/lib/softhsm/libsofthsm2.so", PINSource: "/etc/sigil/pin"}},
	{name: "pin-source-file-triple-slash", in: "pkcs11:token=sigil?" + mod + "&pin-source=file:///etc/pin",
		want: hsm.URI{Token: "sigil", ModulePath: "/usr/lib/softhsm/libsofthsm2.so", PINSource: "/etc/pin"}},
	{name: "pin-source-plain-path", in: "pkcs11:token=sigil?" + mod + "&pin-source=/etc/pin",
		want: hsm.URI{Token: "sigil", ModulePath: "/usr/lib/softhsm/libsofthsm2.so", PINSource: "/etc/pin"}},
	{name: "serial-and-object", in: "PKCS11:serial=87db6e22ac16a979;object=jwt?" + mod,
		want: hsm.URI{Serial: "87db6e22ac16a979", Object: "jwt", ModulePath: "/usr/lib/softhsm/libsofthsm2.so"}},
	{name: "percent-encoded-label-and-path", in: "pkcs11:token=My%20Token%3b1?module-path=/opt/a%20b/lib.so",
		want: hsm.URI{Token: "My Token;1", ModulePath: "/opt/a b/lib.so"}},
	{name: "utf8-label", in: "pkcs11:token=%C3%A1?" + mod,
		want: hsm.URI{Token: "á", ModulePath: "/usr/lib/softhsm/libsofthsm2.so"}},

	{name: "wrong-scheme", in: "pkcs12:token=a?" + mod, err: `hsm: invalid pkcs11 URI: must start with "pkcs11:"`},
	{name: "empty", in: "", err: `hsm: invalid pkcs11 URI: must start with "pkcs11:"`},
	{name: "too-long", in: "pkcs11:token=" + strings.Repeat("a", 4100), err: "hsm: invalid pkcs11 URI: longer than 4096 bytes"},
	{name: "no-token", in: "pkcs11:?" + mod, err: "hsm: invalid pkcs11 URI: no token= or serial= attribute: name the token"},
	{name: "token-and-serial", in: "pkcs11:token=a;serial=1?" + mod, err: "hsm: invalid pkcs11 URI: both token= and serial= given: keep one"},
	{name: "no-module", in: "pkcs11:token=a", err: `hsm: invalid pkcs11 URI: attribute "module-path": missing: give the PKCS#11 module's absolute path`},
	{name: "relative-module", in: "pkcs11:token=a?module-path=lib.so", err: `hsm: invalid pkcs11 URI: attribute "module-path": must be a clean absolute path`},
	{name: "unclean-module", in: "pkcs11:token=a?module-path=/usr/../lib.so", err: `hsm: invalid pkcs11 URI: attribute "module-path": must be a clean absolute path`},
	{name: "pin-value", in: "pkcs11:token=a?" + mod + "&pin-value=123456", err: `hsm: invalid pkcs11 URI: attribute "pin-value": a PIN in the URI is not accepted; use pin-source=file:/path or an environment variable (WithPINEnv)`},
	{name: "pin-source-command", in: "pkcs11:token=a?" + mod + "&pin-source=|/bin/getpin", err: `hsm: invalid pkcs11 URI: attribute "pin-source": must be file:/absolute/path (a clean absolute path)`},
	{name: "pin-source-remote-file", in: "pkcs11:token=a?" + mod + "&pin-source=file://host/pin", err: `hsm: invalid pkcs11 URI: attribute "pin-source": must be file:/absolute/path (a clean absolute path)`},
	{name: "module-name", in: "pkcs11:token=a?module-name=softhsm2", err: `hsm: invalid pkcs11 URI: attribute "module-name": not supported; give module-path`},
	{name: "unknown-attribute", in: "pkcs11:token=a;modle=x?" + mod, err: `hsm: invalid pkcs11 URI: attribute "modle": unknown or unsupported attribute`},
	{name: "id-attribute", in: "pkcs11:token=a;id=%01?" + mod, err: `hsm: invalid pkcs11 URI: attribute "id": not supported; name keys with object=`},
	{name: "module-in-path", in: "pkcs11:token=a;" + mod, err: `hsm: invalid pkcs11 URI: attribute "module-path": belongs in the query part, after "?"`},
	{name: "token-in-query", in: "pkcs11:?token=a&" + mod, err: `hsm: invalid pkcs11 URI: attribute "token": belongs in the path part, before "?"`},
	{name: "duplicate", in: "pkcs11:token=a;token=b?" + mod, err: `hsm: invalid pkcs11 URI: attribute "token": given more than once`},
	{name: "empty-value", in: "pkcs11:token=?" + mod, err: `hsm: invalid pkcs11 URI: attribute "token": empty value`},
	{name: "no-equals", in: "pkcs11:token?" + mod, err: "hsm: invalid pkcs11 URI: malformed attribute: want name=value with a lower-case name"},
	{name: "stray-pin-not-echoed", in: "pkcs11:token=a?" + mod + "&1234", err: "hsm: invalid pkcs11 URI: malformed attribute: want name=value with a lower-case name"},
	{name: "trailing-separator", in: "pkcs11:token=a;?" + mod, err: "hsm: invalid pkcs11 URI: malformed attribute: want name=value with a lower-case name"},
	{name: "bad-percent", in: "pkcs11:token=a%2?" + mod, err: `hsm: invalid pkcs11 URI: attribute "token": bad percent-encoding`},
	{name: "bad-percent-hex", in: "pkcs11:token=a%zz?" + mod, err: `hsm: invalid pkcs11 URI: attribute "token": bad percent-encoding`},
	{name: "raw-space", in: "pkcs11:token=a b?" + mod, err: `hsm: invalid pkcs11 URI: attribute "token": contains a character that must be percent-encoded`},
	{name: "raw-slash-in-path", in: "pkcs11:token=a/b?" + mod, err: `hsm: invalid pkcs11 URI: attribute "token": contains a character that must be percent-encoded`},
	{name: "nul-byte", in: "pkcs11:token=a%00?" + mod, err: `hsm: invalid pkcs11 URI: attribute "token": contains a control character`},
	{name: "invalid-utf8", in: "pkcs11:token=%FF?" + mod, err: `hsm: invalid pkcs11 URI: attribute "token": not valid UTF-8`},
	{name: "label-too-long", in: "pkcs11:token=" + strings.Repeat("a", 33) + "?" + mod, err: `hsm: invalid pkcs11 URI: attribute "token": longer than 32 bytes`},
	{name: "serial-too-long", in: "pkcs11:serial=" + strings.Repeat("1", 17) + "?" + mod, err: `hsm: invalid pkcs11 URI: attribute "serial": longer than 16 bytes`},
}

func TestParseURI(t *testing.T) {
	t.Parallel()
	for _, tc := range uriTests {
		t.Run(tc.name, func(t *testing.T) {
			u, err := hsm.ParseURI(tc.in)
			if tc.err != "" {
				if err == nil || err.Error() != tc.err || !errors.Is(err, hsm.ErrInvalidURI) {
					t.Fatalf("ParseURI error = %v, want %q wrapping ErrInvalidURI", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseURI: %v", err)
			}
			if *u != tc.want {
				t.Fatalf("ParseURI = %+v, want %+v", *u, tc.want)
			}
		})
	}
}

func TestURIStringIsCanonical(t *testing.T) {
	t.Parallel()
	u := hsm.URI{Token: "My Token;1", ModulePath: "/opt/a b/lib.so", PINSource: "/run/pin"}
	const want = "pkcs11:token=My%20Token%3B1?module-path=/opt/a%20b/lib.so&pin-source=file:/run/pin"
	if got := u.String(); got != want {
		t.Fatalf("String() = %q, want %q", got, want)
	}
}

// uriErrShape is every error ParseURI may return: fixed text, and at most an
// attribute name quoted — never a value.
var uriErrShape = regexp.MustCompile(`^hsm: invalid pkcs11 URI: (attribute "[a-z-]{1,32}": )?([^"]|"\?"|"pkcs11:")*$`)

func FuzzParseURI(f *testing.F) {
	for _, tc := range uriTests {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, in string) {
		u, err := hsm.ParseURI(in)
		if err != nil {
			if !errors.Is(err, hsm.ErrInvalidURI) || !uriErrShape.MatchString(err.Error()) {
				t.Fatalf("ParseURI(%q): unexpected error shape: %v", in, err)
			}
			return
		}
		again, err := hsm.ParseURI(u.String())
		if err != nil || *again != *u {
			t.Fatalf("round trip of %q via %q: %+v, %v; want %+v", in, u.String(), again, err, *u)
		}
	})
}
