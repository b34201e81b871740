package attest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
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

// Version 2 (WorkloadEvidenceVersion) is version 1 plus one optional
// member, "workload" (Workload), last in each record: the facts a host
// agent asserted about the local process it enrolled or renewed for.
// Records with workload facts are written as version 2, all others still
// as version 1, byte for byte as before; a version 1 record carrying
// "workload" is refused. The facts are the agent's assertion, not signed by
// the TPM: AssertedBy says so in the record itself, and re-verification
// checks their form, not their truth.

// EvidenceVersion is the version of the evidence format this package
// writes for records without workload facts.
const EvidenceVersion = 1

// WorkloadEvidenceVersion is the version of records with workload facts.
const WorkloadEvidenceVersion = 2

// AssertedByHostAgent is Workload.AssertedBy: the facts come from the
// host's sigil agent, from the kernel's peer credentials and /proc.
const AssertedByHostAgent = "host-agent"

// Workload (version 2) is what a host agent asserts about the local process
// a record's certificate is for. Nothing in the TPM's evidence vouches for
// it.
type Workload struct {
	// AssertedBy is AssertedByHostAgent.
	AssertedBy string `json:"asserted_by"`
	UID        uint32 `json:"uid"`
	GID        uint32 `json:"gid"`
	User       string `json:"user,omitempty"`
	PID        int32  `json:"pid"`
	Exe        string `json:"exe"`
	ExeSHA256  string `json:"exe_sha256"` // hex
	Cgroup     string `json:"cgroup"`
	Unit       string `json:"unit,omitempty"`
}

// maxWorkloadText bounds each text fact of a Workload.
const maxWorkloadText = 4096

// check checks the form of w: who asserted it, an absolute executable path
// and a SHA-256 of it, bounded text.
func (w *Workload) check() error {
	if w.AssertedBy != AssertedByHostAgent {
		return fmt.Errorf("workload facts asserted by %q, want %q", w.AssertedBy, AssertedByHostAgent)
	}
	if len(w.Exe) == 0 || w.Exe[0] != '/' {
		return fmt.Errorf("workload exe %q: want an absolute path", w.Exe)
	}
	if sum, err := hex.DecodeString(w.ExeSHA256); err != nil || len(sum) != sha256.Size {
		return fmt.Errorf("workload exe_sha256 %q: want 64 hex digits", w.ExeSHA256)
	}
	for _, v := range []string{w.User, w.Exe, w.Cgroup, w.Unit} {
		if len(v) > maxWorkloadText {
			return fmt.Errorf("workload fact longer than %d bytes", maxWorkloadText)
		}
	}
	return nil
}

// SetWorkload records w in the evidence, which makes it version 2.
func (e *Evidence) SetWorkload(w *Workload) error {
	if w == nil {
		return nil
	}
	if err := w.check(); err != nil {
		return fmt.Errorf("attest: %w", err)
	}
	e.Workload, e.Version = w, WorkloadEvidenceVersion
	return nil
}

// SetWorkload records w in the renewal evidence, which makes it version 2.
func (r *Renewal) SetWorkload(w *Workload) error {
	if w == nil {
		return nil
	}
	if err := w.check(); err != nil {
		return fmt.Errorf("attest: %w", err)
	}
	r.Workload, r.Version = w, WorkloadEvidenceVersion
	return nil
}

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
	// Workload (version 2 only) is what the host agent asserted about the
	// process enrolled for.
	Workload *Workload `json:"workload,omitempty"`
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
	// Workload (version 2 only) is as in Evidence.
	Workload *Workload `json:"workload,omitempty"`
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
	_, digest, err := e.Encode()
	return digest, err
}

// Digest is the SHA-256 of the renewal's encoding in its version: the
// evidence digest of the certificate issued on it.
func (r *Renewal) Digest() ([]byte, error) {
	_, digest, err := r.Encode()
	return digest, err
}

// Encode is the evidence's encoding in its version, the bundle stored and
// logged, with its SHA-256, Digest: one encoding for both.
func (e *Evidence) Encode() (bundle, digest []byte, err error) {
	if err := knownVersion(e.Version); err != nil {
		return nil, nil, fmt.Errorf("attest: encode: %w", err)
	}
	return encodeJSON(e)
}

// Encode is the renewal's encoding in its version, the bundle stored and
// logged, with its SHA-256, Digest: one encoding for both.
func (r *Renewal) Encode() (bundle, digest []byte, err error) {
	if err := knownVersion(r.Version); err != nil {
		return nil, nil, fmt.Errorf("attest: encode: %w", err)
	}
	return encodeJSON(r)
}

// ParseEvidence decodes a stored enrollment record: one JSON object of a
// known version, no unknown fields, nothing after it. It checks the format
// only; Reverify checks what the record proves.
func ParseEvidence(data []byte) (*Evidence, error) {
	var e Evidence
	if err := decodeRecord(data, &e); err != nil {
		return nil, fmt.Errorf("attest: parse evidence: %w", err)
	}
	if err := checkWorkload(e.Version, e.Workload); err != nil {
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
	if err := checkWorkload(r.Version, r.Workload); err != nil {
		return nil, fmt.Errorf("attest: parse renewal evidence: %w", err)
	}
	return &r, nil
}

// encodeJSON is a version 1 record's encoding, its encoding/json
// encoding, and the SHA-256 of that: its digest.
func encodeJSON(v any) (bundle, digest []byte, err error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, nil, err
	}
	sum := sha256.Sum256(b)
	return b, sum[:], nil
}

func knownVersion(v int) error {
	if v != EvidenceVersion && v != WorkloadEvidenceVersion {
		return fmt.Errorf("%w %d, want %d or %d", ErrEvidenceVersion, v, EvidenceVersion, WorkloadEvidenceVersion)
	}
	return nil
}

// checkWorkload holds the version rule of "workload": present exactly in
// version 2 records, and well formed.
func checkWorkload(version int, w *Workload) error {
	switch {
	case version == EvidenceVersion && w != nil:
		return errors.New("version 1 record carries workload facts, which only version 2 has")
	case version == WorkloadEvidenceVersion && w == nil:
		return errors.New("version 2 record without workload facts")
	case w != nil:
		return w.check()
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
