package attest

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// The evidence format. Evidence and Renewal records are kept forever: the
// store holds them, the audit log carries them byte for byte, and the
// SHA-256 of each record is the evidence digest in the certificate issued
// on it. Their JSON encoding is therefore a stable format owned by this
// package, independent of the HTTP API (package api), whose messages the
// server converts into these types when it receives them.
//
// Version 1 (EvidenceVersion) is the encoding/json encoding of the types
// below, fields in declaration order, binary fields as standard base64,
// times as RFC 3339 with nanoseconds in UTC. TPM structures are kept in
// their TPM 2.0 wire encodings, exactly as the TPM produced them.
//
// The rule for changing it: a record's bytes never change once written,
// and neither does what they mean. Any change to the encoding (a field
// added, removed, renamed, retyped or reinterpreted) is a new version
// number; this package then keeps reading and re-verifying every earlier
// version, and Digest of a record keeps hashing the encoding of the
// record's own version, so digests in certificates already issued still
// match. testdata/v1 holds records written by version 1 code, and
// TestEvidenceFormatV1 fails if they stop re-verifying or their digests
// change.

// EvidenceVersion is the version of the evidence format this package
// writes; it is the only one it reads.
const EvidenceVersion = 1

// Evidence (version 1) is everything an enrollment proved, kept so that
// anyone holding the EK roots can re-verify it offline (Reverify). It holds
// no secret.
type Evidence struct {
	// Version is EvidenceVersion.
	Version int `json:"version"`
	// Identity is the SPIFFE ID the enrollment asked for.
	Identity string `json:"identity"`
	// EKCertificate is the DER EK certificate; empty when the EK public
	// key was allow-listed instead.
	EKCertificate []byte `json:"ek_certificate,omitempty"`
	// EKPublic is the EK public key, PKIX DER.
	EKPublic []byte `json:"ek_public"`
	// AK is the attestation key and its creation evidence.
	AK AKParameters `json:"ak"`
	// Nonce is the challenge nonce every proof is over (NonceSize bytes).
	Nonce []byte `json:"nonce"`
	// PCRs are the SHA-256 PCR indexes the verifier required.
	PCRs []int `json:"required_pcrs"`
	// Platform is the boot state: quotes and event log.
	Platform Platform `json:"platform"`
	// Key is the application key and its certification by the AK.
	Key CertifiedKey `json:"key"`
	// CSR is the DER certificate request, signed by Key.
	CSR []byte `json:"csr"`
	// VerifiedAt is when the server verified it; EK certificates are
	// checked as of this time on re-verification.
	VerifiedAt time.Time `json:"verified_at"`
}

// Renewal (version 1) is the evidence of a certificate renewal: a fresh
// quote by the AK the device was bound to at enrollment, over the renewal
// nonce, and a CSR by the certificate's own key. It holds no secret and
// re-verifies offline (VerifyRenewal).
type Renewal struct {
	// Version is EvidenceVersion.
	Version int `json:"version"`
	// Identity is the SPIFFE ID of the certificate renewed.
	Identity string `json:"identity"`
	// Previous is the serial (hex) of the certificate being renewed.
	Previous string `json:"previous_serial"`
	// EKHash is the hex SHA-256 of the device's EK public key (PKIX DER).
	EKHash string `json:"ek_hash"`
	// AKPublic is the pinned AK's TPMT_PUBLIC, from the device record.
	AKPublic []byte `json:"ak_public"`
	// Nonce is the renewal challenge nonce (NonceSize bytes).
	Nonce []byte `json:"nonce"`
	// Platform is the boot state: quotes and event log.
	Platform Platform `json:"platform"`
	// CSR is the DER certificate request, signed by the certificate's key.
	CSR []byte `json:"csr"`
	// VerifiedAt is when the server verified it.
	VerifiedAt time.Time `json:"verified_at"`
}

// AKParameters are a TPM attestation key's public area and its creation
// evidence (go-attestation's AttestationParameters).
type AKParameters struct {
	Public            []byte `json:"public"`             // TPMT_PUBLIC
	CreateData        []byte `json:"create_data"`        // TPMS_CREATION_DATA
	CreateAttestation []byte `json:"create_attestation"` // TPMS_ATTEST
	CreateSignature   []byte `json:"create_signature"`   // TPMT_SIGNATURE
}

// Platform is the boot state: quotes over PCRs and the event log that
// explains them.
type Platform struct {
	Quotes []Quote `json:"quotes"`
	PCRs   []PCR   `json:"pcrs"`
	// EventLog is the TCG measured-boot event log, as the firmware wrote it.
	EventLog []byte `json:"event_log"`
}

// Quote is a TPM2_Quote and its signature by the AK.
type Quote struct {
	Quote     []byte `json:"quote"`     // TPMS_ATTEST
	Signature []byte `json:"signature"` // TPMT_SIGNATURE
}

// PCR is one PCR value as read from the TPM.
type PCR struct {
	Index  int    `json:"index"`
	Alg    string `json:"alg"` // "sha1" or "sha256"
	Digest []byte `json:"digest"`
}

// CertifiedKey is an application key and its certification by the AK
// (go-attestation's CertificationParameters).
type CertifiedKey struct {
	Public            []byte `json:"public"`             // TPMT_PUBLIC
	CreateData        []byte `json:"create_data"`        // TPMS_CREATION_DATA
	CreateAttestation []byte `json:"create_attestation"` // TPMS_ATTEST
	CreateSignature   []byte `json:"create_signature"`   // TPMT_SIGNATURE
}

// ErrEvidenceVersion means a record is of an evidence format version this
// package does not know: re-verify it with a newer sigil.
var ErrEvidenceVersion = errors.New("unknown evidence format version")

// Digest is the SHA-256 of the evidence's encoding in its version: the
// evidence digest of the certificate issued on it.
func (e *Evidence) Digest() ([]byte, error) {
	if err := knownVersion(e.Version); err != nil {
		return nil, fmt.Errorf("attest: digest: %w", err)
	}
	return digestJSON(e)
}

// Digest is the SHA-256 of the renewal's encoding in its version: the
// evidence digest of the certificate issued on it.
func (r *Renewal) Digest() ([]byte, error) {
	if err := knownVersion(r.Version); err != nil {
		return nil, fmt.Errorf("attest: digest: %w", err)
	}
	return digestJSON(r)
}

// ParseEvidence decodes a stored enrollment record: one JSON object of a
// known version, no unknown fields, nothing after it. It checks the format
// only; Reverify checks what the record proves.
func ParseEvidence(data []byte) (*Evidence, error) {
	var e Evidence
	if err := decodeRecord(data, &e); err != nil {
		return nil, fmt.Errorf("attest: parse evidence: %w", err)
	}
	return &e, nil
}

// ParseRenewal decodes a stored renewal record, as ParseEvidence does.
func ParseRenewal(data []byte) (*Renewal, error) {
	var r Renewal
	if err := decodeRecord(data, &r); err != nil {
		return nil, fmt.Errorf("attest: parse renewal evidence: %w", err)
	}
	return &r, nil
}

// digestJSON is the digest of a version 1 record: the SHA-256 of its
// encoding/json encoding.
func digestJSON(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(b)
	return sum[:], nil
}

func knownVersion(v int) error {
	if v != EvidenceVersion {
		return fmt.Errorf("%w %d, want %d", ErrEvidenceVersion, v, EvidenceVersion)
	}
	return nil
}

// decodeRecord decodes one record of a known version into v. The version
// is read first, so a record of a later version is named as such rather
// than as one with unknown fields; json.Unmarshal refuses anything after
// the record.
func decodeRecord(data []byte, v any) error {
	var head struct {
		Version int `json:"version"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return err
	}
	if err := knownVersion(head.Version); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}
