package verify

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"

	"github.com/sigil-dev/sigil/token"
)

// signatureAlgorithms are the JWS algorithms Verify implements (RFC 7518
// §3.4, §3.5): each one's hash and, for ECDSA, the one curve its keys are
// on; a nil curve is RSASSA-PSS.
var signatureAlgorithms = map[string]struct {
	hash  crypto.Hash
	curve elliptic.Curve
}{
	"ES256": {crypto.SHA256, elliptic.P256()},
	"ES384": {crypto.SHA384, elliptic.P384()},
	"PS256": {crypto.SHA256, nil},
}

// publicKey is a JWKS key checked once, when the JWKS is read, to suit the
// one algorithm it verifies.
type publicKey struct {
	alg string
	key crypto.PublicKey
}

// newPublicKey returns k's key for k.Alg; false if the algorithm is not
// one of signatureAlgorithms (a JWK without alg is not pinned to one) or
// the key is not of its type and curve.
func newPublicKey(k token.PublicKey) (publicKey, bool) {
	a, ok := signatureAlgorithms[k.Alg]
	p := publicKey{alg: k.Alg, key: k.Key}
	switch key := k.Key.(type) {
	case *ecdsa.PublicKey:
		return p, ok && a.curve != nil && key.Curve == a.curve
	case *rsa.PublicKey:
		return p, ok && a.curve == nil
	}
	return p, false
}

// verify reports whether sig is p's signature of the JWS signing input
// (token.VerifySignature).
func (p publicKey) verify(input string, sig []byte) bool {
	return token.VerifySignature(p.alg, p.key, input, sig) == nil
}
