package hsm

import (
	"context"
	"crypto"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync/atomic"
	"time"

	"github.com/ThalesGroup/crypto11"
)

var _ crypto.Signer = (*Key)(nil)

// Key is one version of a key pair on the token, usable as a crypto.Signer.
// It is safe for concurrent use and outlives reconnects: after the HSM
// handle rebuilds its PKCS#11 context, the Key looks itself up again by
// label and CKA_ID, and refuses to sign (ErrKeyNotFound) if the key found is
// not the one it was handed out as.
type Key struct {
	h     *HSM
	info  KeyInfo
	pub   crypto.PublicKey
	hash  crypto.Hash
	met   *signMetrics
	bound atomic.Pointer[binding]
}

// binding is a Key resolved on one connection.
type binding struct {
	conn   *conn
	signer crypto11.Signer
}

func (h *HSM) newKey(c *conn, e entry) *Key {
	k := &Key{h: h, info: e.info, pub: e.signer.Public(), hash: e.info.Alg.hash(), met: h.met.forAlg(e.info.Alg)}
	k.bound.Store(&binding{conn: c, signer: e.signer})
	return k
}

// Public returns the public key (*ecdsa.PublicKey or *rsa.PublicKey).
func (k *Key) Public() crypto.PublicKey { return k.pub }

// Info describes the key.
func (k *Key) Info() KeyInfo {
	i := k.info
	i.ID = slices.Clone(i.ID)
	return i
}

// KID returns the key id: the RFC 7638 JWK SHA-256 thumbprint, base64url.
func (k *Key) KID() string { return k.info.KID }

// Alg returns the algorithm the key signs with.
func (k *Key) Alg() Alg { return k.info.Alg }

// Label returns the key's label on the token, "<name>.v<version>".
func (k *Key) Label() string { return k.info.Label }

// pssSHA256 is the only PSS parameter set PS256 keys sign with (RFC 7518).
var pssSHA256 = &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256}

// Sign signs a digest in the HSM; rand is ignored (the token draws its own).
// opts must name the key's hash (SHA-256 for ES256 and PS256, SHA-384 for
// ES384); PS256 keys sign RSA-PSS only, with *rsa.PSSOptions whose salt
// length is rsa.PSSSaltLengthEqualsHash, 32, or rsa.PSSSaltLengthAuto (then
// 32 is used, which any PSS verifier accepts). ECDSA signatures are ASN.1
// DER. Sign is bounded by WithTimeout, including waits for a session or a
// reconnect; errors are *Error, matching ErrUnavailable when the token is
// unreachable.
func (k *Key) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	start := time.Now()
	sig, err := k.sign(digest, opts)
	k.met.observe(start, err)
	return sig, err
}

func (k *Key) sign(digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	opts, err := k.checkOpts(digest, opts)
	if err != nil {
		return nil, &Error{Op: "sign", Key: k.info.Label, Err: err}
	}
	ctx, cancel := context.WithTimeout(context.Background(), k.h.opts.timeout)
	defer cancel()
	b, err := k.binding(ctx)
	if err != nil {
		return nil, err
	}
	sig, err := run(ctx, k.h.work, func() ([]byte, error) { return b.signer.Sign(nil, digest, opts) })
	if err != nil && isStaleHandle(err) {
		k.bound.CompareAndSwap(b, nil)
	}
	return sig, k.h.fail(b.conn, "sign", k.info.Label, err)
}

// binding returns the key resolved on the current connection, looking it up
// again after a reconnect or a stale handle.
func (k *Key) binding(ctx context.Context) (*binding, error) {
	c, err := k.h.conn(ctx, "sign", k.info.Label)
	if err != nil {
		return nil, err
	}
	if b := k.bound.Load(); b != nil && b.conn == c {
		return b, nil
	}
	s, err := run(ctx, k.h.work, func() (crypto11.Signer, error) { return c.find(k.info, k.pub) })
	if err != nil {
		return nil, k.h.fail(c, "sign", k.info.Label, err)
	}
	b := &binding{conn: c, signer: s}
	k.bound.Store(b)
	return b, nil
}

// find resolves a key by label and CKA_ID and checks its public half.
func (c *conn) find(info KeyInfo, pub crypto.PublicKey) (crypto11.Signer, error) {
	ss, err := c.ctx.FindKeyPairs(info.ID, []byte(info.Label))
	if err != nil {
		return nil, err
	}
	if len(ss) != 1 || !samePublic(ss[0].Public(), pub) {
		return nil, errKeyChanged
	}
	return ss[0], nil
}

func samePublic(a, b crypto.PublicKey) bool {
	eq, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && eq.Equal(b)
}

// checkOpts pins the hash and, for PS256, the PSS parameters: the caller
// does not choose the crypto.
func (k *Key) checkOpts(digest []byte, opts crypto.SignerOpts) (crypto.SignerOpts, error) {
	if opts == nil || opts.HashFunc() != k.hash {
		return nil, fmt.Errorf("%s key signs %v digests only", k.info.Alg, k.hash)
	}
	if len(digest) != k.hash.Size() {
		return nil, fmt.Errorf("digest is %d bytes, %v needs %d", len(digest), k.hash, k.hash.Size())
	}
	if k.info.Alg != PS256 {
		return opts, nil
	}
	p, ok := opts.(*rsa.PSSOptions)
	if !ok {
		return nil, errors.New("PS256 key signs RSA-PSS only: pass *rsa.PSSOptions")
	}
	switch p.SaltLength {
	case rsa.PSSSaltLengthAuto, rsa.PSSSaltLengthEqualsHash, k.hash.Size():
		return pssSHA256, nil
	}
	return nil, fmt.Errorf("PSS salt length %d not supported: use rsa.PSSSaltLengthEqualsHash", p.SaltLength)
}
