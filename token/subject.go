package token

import (
	"errors"
	"fmt"
	"strings"

	"github.com/sigil-dev/sigil/identity"
)

// The subject of every token sigil issues is one of two kinds, and a
// resource server tells them apart from the standard claims alone, sub or
// sub_id (RFC 9493):
//
//   - a workload: sub is a SPIFFE ID (IsSPIFFEID: it begins with
//     "spiffe://", exactly, in lower case), whose holder sigil attested;
//     sigil_sub_iss is absent; sub_id is {"format": "uri", "uri": sub}.
//   - a user of an external issuer (an IdP): sigil_sub_iss names the
//     issuer, and sub is the user's identifier there, which
//     CheckExternalSubject accepted, so that no reading of it is a SPIFFE
//     ID; sub_id is {"format": "iss_sub", "iss": the IdP, "sub": sub}.
//
// Every actor in act is a workload whose certificate sigil saw at the
// exchange that added it: sigil refuses an external token that carries an
// act claim of its own. Claims.IsWorkload, Claims.IsUser and
// Claims.CheckIdentities apply these rules to a token.

// subjectID is the sub_id claim (RFC 9493 §4.1), a standard claim that
// says which kind of subject sub is: a workload as a Subject Identifier
// of the "uri" format whose uri is its SPIFFE ID, a user as one of the
// "iss_sub" format naming the external issuer and the user's sub there. Two
// IdPs' users with the same sub differ in it, as they do in sub and
// sigil_sub_iss together.
type subjectID struct {
	Format string `json:"format"`
	URI    string `json:"uri,omitempty"`
	Iss    string `json:"iss,omitempty"`
	Sub    string `json:"sub,omitempty"`
}

// subjectID is c's sub_id; nil if the subject is neither a workload nor a
// user (such claims are no token's of sigil: see CheckIdentities).
func (c *Claims) subjectID() *subjectID {
	switch {
	case c.IsWorkload():
		return &subjectID{Format: "uri", URI: c.Subject}
	case c.IsUser():
		return &subjectID{Format: "iss_sub", Iss: c.SubjectIssuer, Sub: c.Subject}
	}
	return nil
}

// MaxExternalSubject is the longest external subject, in bytes: OpenID
// Connect Core §2 caps sub at 255 ASCII characters.
const MaxExternalSubject = 255

// MaxSPIFFEID is the longest SPIFFE ID, in bytes (SPIFFE ID §2.3).
const MaxSPIFFEID = identity.MaxLength

// escapes are the bytes that begin an escape in the encodings a subject
// passes through on its way to a resource server's comparison: '%' in
// URIs and forms, '\' in JSON and string literals, '&' in HTML and XML.
// Refused, so that every reading of an accepted subject has the same
// letters as the subject itself.
const escapes = `%\&`

// CheckExternalSubject checks s, the subject of an external issuer's
// token (or the claim configured in its place), before it becomes the sub
// of a token of sigil: 1 to MaxExternalSubject bytes of printable ASCII
// (no control character, no non-ASCII rune, so no Unicode lookalike,
// invisible or bidirectional character), without surrounding spaces or
// the escape characters % \ &, and not a SPIFFE ID in any case or
// spacing: "spiffe:" may not appear in it once spaces and '+' are
// dropped and letters lowered. Errors say which rule failed; they are
// for logs, as they describe the input.
func CheckExternalSubject(s string) error {
	switch {
	case s == "":
		return errors.New("token: external subject is empty")
	case len(s) > MaxExternalSubject:
		return fmt.Errorf("token: external subject is longer than %d bytes", MaxExternalSubject)
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20 || c > 0x7e:
			return fmt.Errorf("token: external subject has byte %#x at offset %d: only printable ASCII is accepted", c, i)
		case strings.IndexByte(escapes, c) >= 0:
			return fmt.Errorf("token: external subject has the escape character %q at offset %d", c, i)
		}
	}
	switch {
	case s[0] == ' ' || s[len(s)-1] == ' ':
		return errors.New("token: external subject has surrounding spaces")
	case strings.Contains(folded(s), "spiffe:"):
		return errors.New("token: external subject reads as a SPIFFE ID")
	}
	return nil
}

// folded is ASCII s in lower case without spaces and '+' (a space in a
// form): the letters a lenient reader compares.
func folded(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '+':
			continue
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		}
		b.WriteByte(c)
	}
	return b.String()
}

// IsSPIFFEID reports whether s is a workload's SPIFFE ID, by the check
// every part of sigil applies (identity.Workload): go-spiffe's grammar
// (lower-case scheme and trust domain, path segments of [A-Za-z0-9._-]), a
// path, at most MaxSPIFFEID bytes and a trust domain of at most 255.
func IsSPIFFEID(s string) bool {
	_, err := identity.Workload(s)
	return err == nil
}

// IsWorkload reports whether the token's subject is a workload: a SPIFFE
// ID, with no external issuer (SubjectIssuer).
func (c *Claims) IsWorkload() bool { return c.SubjectIssuer == "" && IsSPIFFEID(c.Subject) }

// IsUser reports whether the token's subject is a user of the external
// issuer SubjectIssuer (an IdP), with an identifier CheckExternalSubject
// accepts: never a SPIFFE ID.
func (c *Claims) IsUser() bool {
	return c.SubjectIssuer != "" && CheckExternalSubject(c.Subject) == nil
}

// CheckIdentities checks the identities a token of sigil names: its
// subject is a workload or a user (IsWorkload, IsUser), and every actor
// in act is a workload, since only sigil's own exchanges add actors.
func (c *Claims) CheckIdentities() error {
	if !c.IsWorkload() && !c.IsUser() {
		return errors.New("token: sub is neither a workload's SPIFFE ID nor a user of an external issuer")
	}
	for a := c.Actor; a != nil; a = a.Actor {
		if !IsSPIFFEID(a.Subject) {
			return errors.New("token: an actor in act is not a workload's SPIFFE ID")
		}
	}
	return nil
}
