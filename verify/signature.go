package verify

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	_ "crypto/sha256" // for crypto.SHA256.New
	_ "crypto/sha512" // for crypto.SHA384.New
	"io"
	"math/big"

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

// pssOptions are RFC 7518 §3.5's: the salt is as long as the hash.
var pssOptions = &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash}

// publicKey is a JWKS key checked once, when the JWKS is read, to suit the
// one algorithm it verifies.
type publicKey struct {
	alg  string
	hash crypto.Hash
	ec   *ecdsa.PublicKey // ES256, ES384
	rsa  *rsa.PublicKey   // PS256
}

// newPublicKey returns k's key for k.Alg; false if the algorithm is not
// one of signatureAlgorithms (a JWK without alg is not pinned to one) or
// the key is not of its type and curve.
func newPublicKey(k token.PublicKey) (publicKey, bool) {
	a, ok := signatureAlgorithms[k.Alg]
	p := publicKey{alg: k.Alg, hash: a.hash}
	switch key := k.Key.(type) {
	case *ecdsa.PublicKey:
		p.ec = key
		return p, ok && a.curve != nil && key.Curve == a.curve
	case *rsa.PublicKey:
		p.rsa = key
		return p, ok && a.curve == nil
	}
	return p, false
}

// verify reports whether sig is p's signature of the JWS signing input.
// An ECDSA signature is R||S, each as long as the curve's order (RFC 7518
// §3.4).
func (p publicKey) verify(input string, sig []byte) bool {
	h := p.hash.New()
	_, _ = io.WriteString(h, input)
	digest := h.Sum(nil)
	if p.rsa != nil {
		return rsa.VerifyPSS(p.rsa, p.hash, digest, sig, pssOptions) == nil
	}
	n := (p.ec.Curve.Params().BitSize + 7) / 8
	if len(sig) != 2*n {
		return false
	}
	r, s := new(big.Int).SetBytes(sig[:n]), new(big.Int).SetBytes(sig[n:])
	return ecdsa.Verify(p.ec, digest, r, s)
}
