package audit

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

// sigTypeECDSA is the signed-note signature type byte of ECDSA P-256 with
// SHA-256 (the value transparency-dev/formats and Sigstore use).
const sigTypeECDSA = 0x02

// Signer signs checkpoints with an ECDSA P-256 key behind a crypto.Signer
// (an HSM key). The key name is the log's origin.
//
// Signatures follow the C2SP signed-note format: the signature is the
// ASN.1 DER ECDSA signature over SHA-256 of the note text, and the 4-byte
// key ID is the first four bytes of SHA-256(name || "\n" || 0x02 ||
// SubjectPublicKeyInfo DER), the signed-note rule for new signature types
// with 0x02 as the ECDSA type. Note: Sigstore's Rekor, and
// transparency-dev/formats' NewECDSAVerifier, hash the SPKI alone; their
// verifiers do not recognise these key IDs, and ours do not recognise
// theirs.
type Signer struct {
	key crypto.Signer
	v   *Verifier
}

// NewSigner returns a Signer for key s under name, which must be a valid
// note name (no spaces, no '+') and is the origin of every checkpoint it
// signs. s must be an ECDSA P-256 key. s.Sign gets no context: bound its
// duration in s itself (hsm.WithTimeout does).
func NewSigner(name string, s crypto.Signer) (*Signer, error) {
	if s == nil {
		return nil, errors.New("audit: new signer: nil key")
	}
	v, err := NewVerifier(name, s.Public())
	if err != nil {
		return nil, err
	}
	return &Signer{key: s, v: v}, nil
}

// Name returns the key name, which is the log's origin.
func (s *Signer) Name() string { return s.v.name }

// Verifier returns the verifier of s's signatures.
func (s *Signer) Verifier() *Verifier { return s.v }

// Sign returns cp as a signed note. cp.Origin must be the signer's name.
// The signature is checked before it is returned, so a faulty key never
// yields a note that does not verify.
func (s *Signer) Sign(cp Checkpoint) ([]byte, error) {
	if cp.Origin != s.v.name {
		return nil, fmt.Errorf("audit: sign checkpoint: origin %q, but the key is named %q", cp.Origin, s.v.name)
	}
	text, err := cp.text()
	if err != nil {
		return nil, err
	}
	return note.Sign(&note.Note{Text: text}, s.NoteSigner())
}

// NoteSigner returns s as a note.Signer, to sign any note text.
func (s *Signer) NoteSigner() note.Signer { return noteSigner{s} }

// noteSigner adapts a Signer to note.Signer.
type noteSigner struct{ s *Signer }

var _ note.Signer = noteSigner{}

func (n noteSigner) Name() string    { return n.s.v.name }
func (n noteSigner) KeyHash() uint32 { return n.s.v.hash }

// Sign signs SHA-256(msg) with the key and checks the signature.
func (n noteSigner) Sign(msg []byte) ([]byte, error) {
	d := sha256.Sum256(msg)
	sig, err := n.s.key.Sign(rand.Reader, d[:], crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("audit: sign with %s: %w", n.s.v.ID(), err)
	}
	if !ecdsa.VerifyASN1(n.s.v.pub, d[:], sig) {
		return nil, fmt.Errorf("audit: sign with %s: the key returned a signature that does not verify", n.s.v.ID())
	}
	return sig, nil
}

// Verifier checks checkpoint signatures by one ECDSA P-256 key under one
// name. It is a note.Verifier.
type Verifier struct {
	name string
	hash uint32
	pub  *ecdsa.PublicKey
	spki []byte
}

var _ note.Verifier = (*Verifier)(nil)

// NewVerifier returns a verifier for signatures by pub, an ECDSA P-256
// public key, under name (the log's origin).
func NewVerifier(name string, pub crypto.PublicKey) (*Verifier, error) {
	if !validName(name) {
		return nil, fmt.Errorf("audit: key name %q: want a non-empty line without spaces or '+'", name)
	}
	k, ok := pub.(*ecdsa.PublicKey)
	if !ok || k.Curve != elliptic.P256() {
		return nil, fmt.Errorf("audit: key for %q: want an ECDSA P-256 public key, got %T", name, pub)
	}
	if _, err := k.ECDH(); err != nil {
		return nil, fmt.Errorf("audit: key for %q: %w", name, err)
	}
	spki, err := x509.MarshalPKIXPublicKey(k)
	if err != nil {
		return nil, fmt.Errorf("audit: key for %q: %w", name, err)
	}
	return &Verifier{name: name, hash: keyHash(name, spki), pub: k, spki: spki}, nil
}

// ParseVerifierPEM returns a verifier for the public key in pemBytes, one
// "PUBLIC KEY" PEM block (SubjectPublicKeyInfo), under name.
func ParseVerifierPEM(name string, pemBytes []byte) (*Verifier, error) {
	pub, err := ParsePublicKeyPEM(pemBytes)
	if err != nil {
		return nil, err
	}
	return NewVerifier(name, pub)
}

// ParsePublicKeyPEM parses a log's public key: one "PUBLIC KEY" PEM block
// (SubjectPublicKeyInfo) and nothing else. With it, Origin gives the log's
// default origin.
func ParsePublicKeyPEM(pemBytes []byte) (crypto.PublicKey, error) {
	b, rest := pem.Decode(pemBytes)
	switch {
	case b == nil:
		return nil, errors.New("audit: verifier key: no PEM block")
	case b.Type != "PUBLIC KEY":
		return nil, fmt.Errorf("audit: verifier key: PEM block %q, want PUBLIC KEY", b.Type)
	case strings.TrimSpace(string(rest)) != "":
		return nil, errors.New("audit: verifier key: data after the PEM block")
	}
	pub, err := x509.ParsePKIXPublicKey(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("audit: verifier key: %w", err)
	}
	return pub, nil
}

// keyHash is the signed-note key ID: SHA-256(name || "\n" || 0x02 || SPKI)
// truncated to its first four bytes, big-endian.
func keyHash(name string, spki []byte) uint32 {
	h := sha256.New()
	h.Write([]byte(name))
	h.Write([]byte{'\n', sigTypeECDSA})
	h.Write(spki)
	return binary.BigEndian.Uint32(h.Sum(nil))
}

// Name returns the key name, which is the log's origin.
func (v *Verifier) Name() string { return v.name }

// KeyHash returns the signed-note key ID.
func (v *Verifier) KeyHash() uint32 { return v.hash }

// Verify reports whether sig is an ASN.1 DER ECDSA signature of
// SHA-256(msg) by the key.
func (v *Verifier) Verify(msg, sig []byte) bool {
	d := sha256.Sum256(msg)
	return ecdsa.VerifyASN1(v.pub, d[:], sig)
}

// ID returns "name+keyid" (key ID in hex), as error messages name keys.
func (v *Verifier) ID() string { return fmt.Sprintf("%s+%08x", v.name, v.hash) }

// String returns the verifier key in the signed-note text form:
// "name+keyid+base64(0x02 || SPKI DER)".
func (v *Verifier) String() string {
	return v.ID() + "+" + base64.StdEncoding.EncodeToString(append([]byte{sigTypeECDSA}, v.spki...))
}
