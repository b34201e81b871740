// Package identity is the one check of a SPIFFE ID wherever one enters
// sigil: an enrollment request, a stored challenge or certificate, a
// policy request, the URI SAN the CA signs, the caller of the token
// service, configuration. It adds to go-spiffe's grammar (lower-case
// "spiffe" scheme and trust domain, path segments of [A-Za-z0-9._-], no
// empty, "." or ".." segment, no trailing slash, no query, fragment, port
// or user info) the length limits of the SPIFFE ID standard, which
// go-spiffe does not enforce: a trust domain of at most 255 bytes and an
// ID of at most 2048 bytes.
package identity

import (
	"errors"
	"fmt"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Limits of the SPIFFE ID standard (SPIFFE-ID.md §2.1, §2.3).
const (
	// MaxLength is the longest SPIFFE ID, in bytes, sigil accepts.
	MaxLength = 2048
	// MaxTrustDomainLength is the longest trust domain name, in bytes.
	MaxTrustDomainLength = 255
)

// ErrInvalid is the error of every ID this package refuses; the wrapping
// error says why. Callers answer it as a bad request.
var ErrInvalid = errors.New("invalid SPIFFE ID")

// Parse parses s as a SPIFFE ID within the standard's grammar and limits.
// A trust domain ID (no path) is valid; see Workload.
func Parse(s string) (spiffeid.ID, error) {
	if len(s) > MaxLength {
		return spiffeid.ID{}, fmt.Errorf("%w: %d bytes, longer than %d", ErrInvalid, len(s), MaxLength)
	}
	id, err := spiffeid.FromString(s)
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("%w: %s: %v", ErrInvalid, Quote(s), err)
	}
	return id, Check(id)
}

// Workload parses s as a SPIFFE ID that names a workload: Parse, and a
// path that is not empty.
func Workload(s string) (spiffeid.ID, error) {
	id, err := Parse(s)
	if err != nil {
		return spiffeid.ID{}, err
	}
	if id.Path() == "" {
		return spiffeid.ID{}, fmt.Errorf("%w: %s names no workload (empty path)", ErrInvalid, id)
	}
	return id, nil
}

// Check checks the standard's limits on an ID parsed already, by go-spiffe
// (whose grammar it then holds to).
func Check(id spiffeid.ID) error {
	switch {
	case id.IsZero():
		return fmt.Errorf("%w: empty", ErrInvalid)
	case len(id.TrustDomain().Name()) > MaxTrustDomainLength:
		return fmt.Errorf("%w: trust domain of %d bytes, longer than %d", ErrInvalid, len(id.TrustDomain().Name()), MaxTrustDomainLength)
	case len(id.String()) > MaxLength:
		return fmt.Errorf("%w: %d bytes, longer than %d", ErrInvalid, len(id.String()), MaxLength)
	}
	return nil
}

// Quote quotes s for an error message or a log line, cut to its first 64
// bytes: an identity that is refused may be long.
func Quote(s string) string {
	const keep = 64
	if len(s) <= keep {
		return fmt.Sprintf("%q", s)
	}
	return fmt.Sprintf("%q… (%d bytes)", s[:keep], len(s))
}
