package tpm

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/google/go-attestation/attest"
	"go.step.sm/crypto/tpm/tss2"
)

var _ crypto.Signer = (*Key)(nil)

// Key is an application key: an ECDSA P-256 signing key that never leaves the
// TPM, certified by an AK. It is a crypto.Signer, for example the PrivateKey
// of a tls.Certificate.
//
// At most one key of a TPM is loaded at a time, and none while another
// operation needs object slots: a key is flushed before such operations and
// loaded again by its next Sign. On swtpm, with room for three objects, a
// loaded key would otherwise make NewKey fail (it needs the key, the AK, the
// SRK and the new object).
type Key struct {
	t       *TPM
	blob    []byte
	pub     *ecdsa.PublicKey
	cert    attest.CertificationParameters
	tssPub  []byte
	tssPriv []byte

	// Guarded by the TPM: the loaded key or nil, and whether Close ran.
	k      *attest.Key
	signer crypto.Signer
	closed bool
}

// newKeyMu serialises go-attestation's NewKey across every TPM in the
// process: v0.6.4 fills its key template by writing through the pointers of
// a package-level template (wrapped_tpm20.go templateFromConfig), a data
// race between two TPMs creating keys at once.
var newKeyMu sync.Mutex

// NewKey creates an ECDSA P-256 key under the SRK and certifies it with the
// AK, with qualifyingData (the verifier's nonce) as the attestation's
// extraData.
func (a *AK) NewKey(ctx context.Context, qualifyingData []byte) (*Key, error) {
	var key *Key
	err := a.t.do(ctx, "create key", func() error {
		return a.t.withAK(a.blob, func(ak *attest.AK) error {
			newKeyMu.Lock()
			k, err := a.t.at.NewKey(ak, &attest.KeyConfig{
				Algorithm:      attest.ECDSA,
				Size:           256,
				QualifyingData: qualifyingData,
			})
			newKeyMu.Unlock()
			if err != nil {
				return err
			}
			key, err = a.t.adopt(k)
			return err
		})
	})
	return key, err
}

// LoadKey loads the key that Key.Marshal encoded, checking that it belongs to
// this TPM.
func (t *TPM) LoadKey(ctx context.Context, blob []byte) (*Key, error) {
	var key *Key
	err := t.do(ctx, "load key", func() error {
		if err := t.evict(); err != nil {
			return err
		}
		k, err := t.at.LoadKey(blob)
		if err != nil {
			return err
		}
		key, err = t.adopt(k)
		return err
	})
	return key, err
}

// adopt wraps a loaded go-attestation key as the TPM's resident key, or
// flushes it. The caller holds the TPM.
func (t *TPM) adopt(k *attest.Key) (*Key, error) {
	key, err := wrapKey(t, k)
	if err != nil {
		return nil, errors.Join(err, k.Close())
	}
	t.resident = key
	return key, nil
}

func wrapKey(t *TPM, k *attest.Key) (*Key, error) {
	pub, ok := k.Public().(*ecdsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("key is %T, want ECDSA", k.Public())
	}
	blob, err := k.Marshal()
	if err != nil {
		return nil, err
	}
	tssPub, tssPriv, err := k.Blobs()
	if err != nil {
		return nil, err
	}
	key := &Key{t: t, blob: blob, pub: pub, cert: k.CertificationParameters(), tssPub: tssPub, tssPriv: tssPriv, k: k}
	return key, key.setSigner()
}

func (k *Key) setSigner() error {
	priv, err := k.k.Private(k.pub)
	if err != nil {
		return err
	}
	signer, ok := priv.(crypto.Signer)
	if !ok {
		return errors.New("key cannot sign")
	}
	k.signer = signer
	return nil
}

// evict flushes the resident key, if any. The caller holds the TPM.
func (t *TPM) evict() error {
	k := t.resident
	if k == nil {
		return nil
	}
	t.resident, k.signer = nil, nil
	err := k.k.Close()
	k.k = nil
	if err != nil {
		return fmt.Errorf("flush key: %w", err)
	}
	return nil
}

// load makes k the resident key. The caller holds the TPM.
func (k *Key) load() error {
	if k.closed {
		return errors.New("key is closed")
	}
	if k.k != nil {
		return nil
	}
	if err := k.t.evict(); err != nil {
		return err
	}
	loaded, err := k.t.at.LoadKey(k.blob)
	if err != nil {
		return err
	}
	k.k = loaded
	if err := k.setSigner(); err != nil {
		return errors.Join(err, k.t.evictKey(k))
	}
	k.t.resident = k
	return nil
}

// evictKey flushes k if it is loaded. The caller holds the TPM.
func (t *TPM) evictKey(k *Key) error {
	if t.resident != k {
		return nil
	}
	return t.evict()
}

// Public returns the key's public key (*ecdsa.PublicKey).
func (k *Key) Public() crypto.PublicKey { return k.pub }

// Sign signs digest, the hash of the message under opts.HashFunc(), within
// the TPM's sign timeout (WithSignTimeout). The signature is ASN.1 DER.
func (k *Key) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), k.t.cfg.signTimeout)
	defer cancel()
	return k.SignContext(ctx, digest, opts)
}

// SignContext is Sign bounded by ctx.
func (k *Key) SignContext(ctx context.Context, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if _, pss := opts.(*rsa.PSSOptions); pss {
		return nil, errors.New("tpm: sign: PSS options for an ECDSA key")
	}
	if h := opts.HashFunc(); h == 0 || len(digest) != h.Size() {
		return nil, fmt.Errorf("tpm: sign: digest of %d bytes does not fit hash %v", len(digest), opts.HashFunc())
	}
	var sig []byte
	err := k.t.do(ctx, "sign", func() error {
		if err := k.load(); err != nil {
			return err
		}
		var err error
		sig, err = k.signer.Sign(nil, digest, opts)
		return err
	})
	return sig, err
}

// CertificationParameters returns the AK's certification of the key, for a
// verifier's attest.CertificationParameters.Verify.
func (k *Key) CertificationParameters() attest.CertificationParameters { return k.cert }

// Marshal returns the key's encrypted blob and certification, for LoadKey.
// Only this TPM can load it.
func (k *Key) Marshal() []byte { return append([]byte(nil), k.blob...) }

// TSS2PEM returns the key as a "TSS2 PRIVATE KEY" PEM file under the SRK
// (0x81000001), which OpenSSL's tpm2 provider (tpm2-openssl) and other
// TSS2-based tools load. Like Marshal, it only works with this TPM.
func (k *Key) TSS2PEM() ([]byte, error) {
	b, err := tss2.EncodeToMemory(k.tssPub, k.tssPriv, tss2.WithParent(srkHandle))
	if err != nil {
		return nil, fmt.Errorf("tpm: encode tss2 key: %w", err)
	}
	return b, nil
}

// Close flushes the key if it is loaded; signing afterwards fails.
func (k *Key) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), k.t.cfg.signTimeout)
	defer cancel()
	err := k.t.do(ctx, "close key", func() error {
		if k.closed {
			return nil
		}
		k.closed = true
		return k.t.evictKey(k)
	})
	if errors.Is(err, ErrClosed) {
		return nil
	}
	return err
}
