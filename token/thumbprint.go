package token

import (
	"crypto/sha256"
	"encoding/base64"
)

// Thumbprint returns the RFC 8705 x5t#S256 of a certificate, given its
// DER: base64url(SHA-256(DER)) without padding. A token's cnf carries the
// thumbprint of the certificate it is bound to.
func Thumbprint(der []byte) string {
	sum := sha256.Sum256(der)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}
