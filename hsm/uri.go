package hsm

import (
	"fmt"
	"path/filepath"
	"strings"
	"unicode/utf8"
)

// URI is a parsed RFC 7512 pkcs11: URI naming a token and how to reach it:
//
//	pkcs11:token=sigil?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/sigil/hsm.pin
//
// Path attributes (before "?", separated by ";"): token (label) or serial —
// exactly one — and optionally object, a key name for callers (Open ignores
// it). Query attributes (after "?", separated by "&"): module-path
// (required) and optionally pin-source. The parser is strict: unknown or
// unsupported attributes, duplicates, empty values, bad percent-encoding and
// raw characters RFC 7512 requires to be encoded are errors. pin-value is
// rejected: a PIN written in a URI ends up in config files, shell history and
// logs; use pin-source or WithPINEnv instead. Errors name the attribute at
// fault but never echo a value.
type URI struct {
	Token      string // token label, at most 32 bytes
	Serial     string // token serial number, at most 16 bytes
	Object     string // key name for callers; not used by Open
	ModulePath string // clean absolute path of the PKCS#11 module
	PINSource  string // clean absolute path of a file holding the user PIN, or ""
}

const maxURILen = 4096

// attrs lists the attributes ParseURI accepts: name → in the query part.
var attrs = map[string]bool{
	"token": false, "serial": false, "object": false,
	"module-path": true, "pin-source": true,
}

// refused lists RFC 7512 attributes ParseURI recognises but refuses, and why.
var refused = map[string]string{
	"pin-value":   "a PIN in the URI is not accepted; use pin-source=file:/path or an environment variable (WithPINEnv)",
	"module-name": "not supported; give module-path",
	"id":          "not supported; name keys with object=",
	"type":        "not supported; name keys with object=",
}

// ParseURI parses and validates a pkcs11: URI. Errors wrap ErrInvalidURI.
func ParseURI(s string) (*URI, error) {
	if len(s) > maxURILen {
		return nil, uriErr("", "longer than 4096 bytes")
	}
	if len(s) < 7 || !strings.EqualFold(s[:7], "pkcs11:") {
		return nil, uriErr("", `must start with "pkcs11:"`)
	}
	path, query, hasQuery := strings.Cut(s[7:], "?")
	u, seen := &URI{}, map[string]bool{}
	if path != "" {
		if err := u.parsePart(path, ";", false, seen); err != nil {
			return nil, err
		}
	}
	if hasQuery {
		if err := u.parsePart(query, "&", true, seen); err != nil {
			return nil, err
		}
	}
	return u, u.validate()
}

func (u *URI) parsePart(part, sep string, query bool, seen map[string]bool) error {
	for c := range strings.SplitSeq(part, sep) {
		name, value, ok := strings.Cut(c, "=")
		if err := checkName(name, ok, query, seen); err != nil {
			return err
		}
		v, err := decodeValue(value, query)
		if err != nil {
			return uriErr(name, err.Error())
		}
		if err := u.set(name, v); err != nil {
			return uriErr(name, err.Error())
		}
	}
	return nil
}

// checkName echoes a name only once it is known to be one (letters and
// dashes, followed by "="), so a stray PIN is never quoted back.
func checkName(name string, hasValue, query bool, seen map[string]bool) error {
	if !hasValue || !validName(name) {
		return uriErr("", "malformed attribute: want name=value with a lower-case name")
	}
	if why, ok := refused[name]; ok {
		return uriErr(name, why)
	}
	inQuery, known := attrs[name]
	switch {
	case !known:
		return uriErr(name, "unknown or unsupported attribute")
	case inQuery != query && query:
		return uriErr(name, `belongs in the path part, before "?"`)
	case inQuery != query:
		return uriErr(name, `belongs in the query part, after "?"`)
	case seen[name]:
		return uriErr(name, "given more than once")
	}
	seen[name] = true
	return nil
}

func validName(name string) bool {
	if name == "" || len(name) > 32 {
		return false
	}
	for _, r := range name {
		if (r < 'a' || r > 'z') && r != '-' {
			return false
		}
	}
	return true
}

func (u *URI) set(name, v string) error {
	var err error
	switch name {
	case "token":
		u.Token, err = bounded(v, 32)
	case "serial":
		u.Serial, err = bounded(v, 16)
	case "object":
		u.Object, err = bounded(v, 128)
	case "module-path":
		u.ModulePath, err = cleanAbs(v)
	case "pin-source":
		u.PINSource, err = pinSourcePath(v)
	}
	return err
}

func bounded(v string, max int) (string, error) {
	if len(v) > max {
		return "", fmt.Errorf("longer than %d bytes", max)
	}
	return v, nil
}

func cleanAbs(p string) (string, error) {
	if !filepath.IsAbs(p) || filepath.Clean(p) != p {
		return "", fmt.Errorf("must be a clean absolute path")
	}
	return p, nil
}

// pinSourcePath accepts file:/abs, file:///abs and /abs.
func pinSourcePath(v string) (string, error) {
	p := v
	if rest, ok := strings.CutPrefix(v, "file:"); ok {
		p = rest
		if strings.HasPrefix(rest, "//") {
			p = strings.TrimPrefix(rest, "//")
		}
	}
	if _, err := cleanAbs(p); err != nil {
		return "", fmt.Errorf("must be file:/absolute/path (a clean absolute path)")
	}
	return p, nil
}

func (u *URI) validate() error {
	switch {
	case u.Token == "" && u.Serial == "":
		return uriErr("", "no token= or serial= attribute: name the token")
	case u.Token != "" && u.Serial != "":
		return uriErr("", "both token= and serial= given: keep one")
	case u.ModulePath == "":
		return uriErr("module-path", "missing: give the PKCS#11 module's absolute path")
	}
	return nil
}

func uriErr(name, msg string) error {
	if name == "" {
		return fmt.Errorf("%w: %s", ErrInvalidURI, msg)
	}
	return fmt.Errorf("%w: attribute %q: %s", ErrInvalidURI, name, msg)
}

// decodeValue checks the raw characters RFC 7512 allows in a path or query
// value, then percent-decodes. Decoded values must be UTF-8 without control
// characters.
func decodeValue(v string, query bool) (string, error) {
	if v == "" {
		return "", fmt.Errorf("empty value")
	}
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c == '%':
			d, ok := unhex(v[i+1:])
			if !ok {
				return "", fmt.Errorf("bad percent-encoding")
			}
			b.WriteByte(d)
			i += 2
		case !rawAllowed(c, query):
			return "", fmt.Errorf("contains a character that must be percent-encoded")
		default:
			b.WriteByte(c)
		}
	}
	return checkText(b.String())
}

func checkText(s string) (string, error) {
	if !utf8.ValidString(s) {
		return "", fmt.Errorf("not valid UTF-8")
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return "", fmt.Errorf("contains a control character")
		}
	}
	return s, nil
}

func unhex(s string) (byte, bool) {
	if len(s) < 2 {
		return 0, false
	}
	hi, ok1 := hexVal(s[0])
	lo, ok2 := hexVal(s[1])
	return hi<<4 | lo, ok1 && ok2
}

func hexVal(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// rawAllowed implements RFC 7512 pk11-pchar / pk11-qchar (without "%").
func rawAllowed(c byte, query bool) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	case strings.IndexByte("-._~:[]@!$'()*+,=", c) >= 0:
		return true
	}
	return query && strings.IndexByte("/?|", c) >= 0
}

// String returns the canonical form of u; ParseURI(u.String()) yields u.
func (u *URI) String() string {
	var path, query []string
	for _, a := range [][2]string{{"token", u.Token}, {"serial", u.Serial}, {"object", u.Object}} {
		if a[1] != "" {
			path = append(path, a[0]+"="+escape(a[1], false))
		}
	}
	if u.ModulePath != "" {
		query = append(query, "module-path="+escape(u.ModulePath, true))
	}
	if u.PINSource != "" {
		query = append(query, "pin-source=file:"+escape(u.PINSource, true))
	}
	s := "pkcs11:" + strings.Join(path, ";")
	if len(query) > 0 {
		s += "?" + strings.Join(query, "&")
	}
	return s
}

func escape(s string, query bool) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if isUnreserved(c) || (query && c == '/') {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}

func isUnreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}
