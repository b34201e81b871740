package token

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	_ "crypto/sha256" // for crypto.SHA256.New
	_ "crypto/sha512" // for crypto.SHA384.New, crypto.SHA512.New
	"errors"
	"io"
	"math/big"
)

// ErrSignature is VerifySignature's answer for a signature that does not
// verify, whatever the reason: wrong key, altered input, bad encoding.
var ErrSignature = errors.New("token: bad signature")

// errAlgorithm is VerifySignature's answer for an algorithm it does not
// implement or a key that does not fit it.
var errAlgorithm = errors.New("token: key does not fit the algorithm or the algorithm is not supported")

// signatureHash is the hash of each JWS algorithm that hashes its input
// (RFC 7518 §3.1); EdDSA (RFC 8037) does not.
var signatureHash = map[string]crypto.Hash{
	"ES256": crypto.SHA256, "ES384": crypto.SHA384, "ES512": crypto.SHA512,
	"PS256": crypto.SHA256, "PS384": crypto.SHA384, "PS512": crypto.SHA512,
	"RS256": crypto.SHA256, "RS384": crypto.SHA384, "RS512": crypto.SHA512,
}

// VerifySignature checks sig, the decoded signature of a compact JWS,
// over input, its signing input (the protected header and payload in
// base64url joined by '.'), with pub for the JWS algorithm alg, with the
// standard library alone. The caller has pinned alg to its allow-list;
// pub must fit alg (Fits: the curve of an ECDSA key, an RSA key of at
// least 2048 bits, an Ed25519 key), or the answer is an error. An ECDSA
// signature is R||S, each as long as the curve's order (RFC 7518 §3.4);
// an RSASSA-PSS salt is as long as the hash (RFC 7518 §3.5). Errors:
// ErrSignature, or one saying the key does not fit alg.
func VerifySignature(alg string, pub crypto.PublicKey, input string, sig []byte) error {
	if !Fits(alg, pub) {
		return errAlgorithm
	}
	if alg == "EdDSA" {
		return verified(ed25519.Verify(pub.(ed25519.PublicKey), []byte(input), sig))
	}
	hash, ok := signatureHash[alg]
	if !ok {
		return errAlgorithm
	}
	h := hash.New()
	_, _ = io.WriteString(h, input)
	digest := h.Sum(make([]byte, 0, 64))
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		return verifyECDSA(k, digest, sig)
	case *rsa.PublicKey:
		if alg[0] == 'P' {
			return verified(rsa.VerifyPSS(k, hash, digest, sig, pssOptions) == nil)
		}
		return verified(rsa.VerifyPKCS1v15(k, hash, digest, sig) == nil)
	}
	return errAlgorithm
}

// pssOptions are RFC 7518 §3.5's: the salt is as long as the hash.
var pssOptions = &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash}

// verifyECDSA checks an R||S signature of digest.
func verifyECDSA(k *ecdsa.PublicKey, digest, sig []byte) error {
	n := (k.Curve.Params().BitSize + 7) / 8
	if len(sig) != 2*n {
		return ErrSignature
	}
	r, s := new(big.Int).SetBytes(sig[:n]), new(big.Int).SetBytes(sig[n:])
	return verified(ecdsa.Verify(k, digest, r, s))
}

func verified(ok bool) error {
	if !ok {
		return ErrSignature
	}
	return nil
}
