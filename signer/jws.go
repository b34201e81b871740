package signer

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/sigil-dev/sigil/token"
)

// jwsSigner makes compact JWS (RFC 7515) of one key and algorithm, with
// the standard library: the protected header of each typ is encoded once,
// and signing a payload is one hash and one call to the crypto.Signer (the
// HSM). The header is what go-jose wrote before it: alg, kid and typ, in
// that order.
type jwsSigner struct {
	key     crypto.Signer
	hash    crypto.Hash
	opts    crypto.SignerOpts
	size    int                   // bytes of R and of S for ECDSA; 0 for RSA-PSS
	headers map[token.Type]string // base64url protected header by typ
}

// jwsAlgs are the algorithms of our keys (ourAlgs): the hash, and the
// size of R and S for ECDSA (RFC 7518 §3.4), 0 for RSASSA-PSS (§3.5).
var jwsAlgs = map[string]struct {
	hash crypto.Hash
	size int
}{
	"ES256": {crypto.SHA256, 32},
	"ES384": {crypto.SHA384, 48},
	"PS256": {crypto.SHA256, 0},
}

func newJWSSigner(key crypto.Signer, info KeyInfo, types []token.Type) (*jwsSigner, error) {
	a, ok := jwsAlgs[info.Alg]
	if !ok || !token.Fits(info.Alg, key.Public()) {
		return nil, fmt.Errorf("signer: key %s: algorithm %q not supported for this key", info.Label, info.Alg)
	}
	s := &jwsSigner{key: key, hash: a.hash, opts: a.hash, size: a.size, headers: map[token.Type]string{}}
	if a.size == 0 {
		s.opts = &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: a.hash}
	}
	for _, typ := range types {
		h, err := json.Marshal(struct {
			Alg string `json:"alg"`
			KID string `json:"kid"`
			Typ string `json:"typ"`
		}{info.Alg, info.KID, string(typ)})
		if err != nil {
			return nil, fmt.Errorf("signer: key %s: header: %w", info.Label, err)
		}
		s.headers[typ] = base64.RawURLEncoding.EncodeToString(h)
	}
	return s, nil
}

// sign returns the compact JWS of payload with the typ header typ.
func (s *jwsSigner) sign(typ token.Type, payload []byte) (string, error) {
	hdr, ok := s.headers[typ]
	if !ok {
		return "", fmt.Errorf("signer: the key set does not sign typ %q", typ)
	}
	enc := base64.RawURLEncoding
	buf := make([]byte, 0, len(hdr)+1+enc.EncodedLen(len(payload))+1+enc.EncodedLen(max(2*s.size, 512)))
	buf = append(append(buf, hdr...), '.')
	buf = enc.AppendEncode(buf, payload)
	h := s.hash.New()
	h.Write(buf)
	sig, err := s.key.Sign(rand.Reader, h.Sum(nil), s.opts)
	if err != nil {
		return "", err
	}
	if s.size > 0 {
		if sig, err = rawECDSA(sig, s.size); err != nil {
			return "", err
		}
	}
	buf = enc.AppendEncode(append(buf, '.'), sig)
	return string(buf), nil
}

// rawECDSA turns an ASN.1 DER ECDSA signature, as crypto.Signer returns
// it, into JWS's R||S, each of size bytes. It reads the DER with
// cryptobyte, in place: encoding/asn1 and big.Int cost about twenty
// allocations a signature. R and S must be positive minimal INTEGERs of at
// most size bytes, with nothing after the SEQUENCE.
func rawECDSA(der []byte, size int) ([]byte, error) {
	var (
		seq  cryptobyte.String
		r, s []byte
	)
	in := cryptobyte.String(der)
	if !in.ReadASN1(&seq, cbasn1.SEQUENCE) || !in.Empty() ||
		!seq.ReadASN1Integer(&r) || !seq.ReadASN1Integer(&s) || !seq.Empty() {
		return nil, errors.New("signer: ECDSA signature: malformed DER")
	}
	if !fitsPositive(r, size) || !fitsPositive(s, size) {
		return nil, errors.New("signer: ECDSA signature out of range")
	}
	out := make([]byte, 2*size)
	copy(out[size-len(r):size], r)
	copy(out[2*size-len(s):], s)
	return out, nil
}

// fitsPositive reports whether b, a non-negative INTEGER's minimal
// big-endian bytes as cryptobyte reads them (zero is one zero byte), is
// above zero and fits in size bytes.
func fitsPositive(b []byte, size int) bool {
	return len(b) <= size && !(len(b) == 1 && b[0] == 0)
}
