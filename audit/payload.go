package audit

import (
	"encoding/json"
	"reflect"
	"time"
)

// Enrollment is the payload of DeviceEnrolled: a device proved its identity
// and got a certificate. Evidence is the full attest.Evidence bundle exactly
// as stored: its SHA-256 is EvidenceDigest, and an auditor re-verifies it
// offline.
type Enrollment struct {
	SPIFFEID       string          `json:"spiffe_id"`
	Serial         string          `json:"serial"`
	EKHash         string          `json:"ek_hash"`
	AKHash         string          `json:"ak_hash"`
	EvidenceDigest string          `json:"evidence_digest"`
	PolicyVersion  string          `json:"policy_version"`
	PolicyIDs      []string        `json:"policy_ids,omitempty"`
	PreviousAK     string          `json:"previous_ak,omitempty"` // set when the EK was rebound to a new AK
	Evidence       json.RawMessage `json:"evidence,omitempty"`
}

// Denial is the payload of EnrollmentDenied: attestation or policy refused
// a device.
type Denial struct {
	SPIFFEID      string   `json:"spiffe_id"`
	EKHash        string   `json:"ek_hash"`
	Reason        string   `json:"reason"`
	PolicyVersion string   `json:"policy_version,omitempty"`
	PolicyIDs     []string `json:"policy_ids,omitempty"`
	// EvidenceDigest and Evidence are the refused evidence, when it was
	// authentic and its refusal revoked the device's certificates (a
	// renewal that failed attestation): the revocations cite the digest.
	EvidenceDigest string          `json:"evidence_digest,omitempty"`
	Evidence       json.RawMessage `json:"evidence,omitempty"`
}

// Certificate is the payload of CertificateIssued, CertificateRenewed and
// CertificateRevoked. Evidence is the renewal evidence bundle (renewals
// only); Reason the revocation reason (revocations only).
type Certificate struct {
	Serial         string          `json:"serial"`
	SPIFFEID       string          `json:"spiffe_id,omitempty"`
	EKHash         string          `json:"ek_hash,omitempty"`
	EvidenceDigest string          `json:"evidence_digest,omitempty"`
	PolicyVersion  string          `json:"policy_version,omitempty"`
	NotAfter       time.Time       `json:"not_after,omitzero"`
	Evidence       json.RawMessage `json:"evidence,omitempty"`
	Reason         string          `json:"reason,omitempty"`
	// Decision says what decided a revocation for a change of trust (a
	// failed attestation, a policy set that no longer permits the device),
	// with PolicyVersion the set and PolicyIDs the deciding policies.
	Decision  string   `json:"decision,omitempty"`
	PolicyIDs []string `json:"policy_ids,omitempty"`
}

// Device is the payload of DeviceDisabled and DeviceEnabled. The
// certificates a disabling revokes get CertificateRevoked entries of their
// own.
type Device struct {
	EKHash string `json:"ek_hash"`
	Status string `json:"status"`
}

// AKReplacement is the payload of DeviceAKReplaced: an enrollment that asked
// for it (sigil enroll --replace-ak) bound the device's EK to a new AK. The
// enrollment's own DeviceEnrolled entry, right before, holds the evidence.
// Affected are the identities the device held then, each with a certificate
// that stays valid until it expires; each renews only with a quote by the
// new AK, and Recovery says what their workloads do.
type AKReplacement struct {
	EKHash     string   `json:"ek_hash"`
	PreviousAK string   `json:"previous_ak"`
	AKHash     string   `json:"ak_hash"`
	Serial     string   `json:"serial"` // the certificate of the enrollment that replaced it
	Affected   []string `json:"affected,omitempty"`
	Recovery   string   `json:"recovery"`
}

// Policy is the payload of PolicyLoaded: the content-hash version of the
// policy set and how many policies it holds.
type Policy struct {
	Version  string `json:"version"`
	Policies int    `json:"policies"`
}

// Key is the payload of KeyCreated, KeyRotated and KeyRetired: an HSM key
// by label and key id, never key material.
type Key struct {
	Label   string `json:"label"`
	KID     string `json:"kid"`
	Alg     string `json:"alg"`
	Purpose string `json:"purpose"`
}

// Token is the payload of TokenIssued, TokenExchanged and TokenRevoked. It
// never holds the token itself. Act is the delegation chain, the current
// actor first; CNF is the x5t#S256 certificate thumbprint the token is
// bound to.
type Token struct {
	JTI       string    `json:"jti"`
	ParentJTI string    `json:"parent_jti,omitempty"`
	Sub       string    `json:"sub"`
	Act       []string  `json:"act,omitempty"`
	Aud       []string  `json:"aud,omitempty"`
	Scope     string    `json:"scope,omitempty"`
	Exp       time.Time `json:"exp,omitzero"`
	CNF       string    `json:"cnf,omitempty"`
	// PolicyIDs are the policies that permitted an issued token.
	PolicyIDs []string `json:"policy_ids,omitempty"`
	// Reason says why a revoked token was revoked (TokenRevoked), for
	// example "certificate revoked: device disabled".
	Reason string `json:"reason,omitempty"`
}

// Restore is the payload of RestoreAcknowledged. Anchor is the checkpoint
// note sigild had signed last before the restore (empty when its anchor
// was lost), of which the restored database holds only the first Size
// entries; the feed's epoch changed from PreviousEpoch to Epoch, and its
// sequence numbers restart after FeedHead.
type Restore struct {
	Reason        string `json:"reason"`
	Anchor        string `json:"anchor,omitempty"`
	Size          uint64 `json:"size"`
	PreviousEpoch string `json:"previous_epoch"`
	Epoch         string `json:"epoch"`
	FeedHead      uint64 `json:"feed_head"`
}

// ShardLink is the payload of ShardStarted, the first entry of a shard:
// Name and Origin are the shard's own; Previous is the previous shard's
// seal, absent only in the first shard of a log that was sharded from its
// first entry.
type ShardLink struct {
	Name     string     `json:"name"`
	Origin   string     `json:"origin"`
	Previous *ShardSeal `json:"previous,omitempty"`
}

// ShardSeal is a sealed shard's final state: its origin, its first
// entry's global index Start, and its final checkpoint Checkpoint (a
// signed note of Size entries with root Root, base64 in JSON), which no
// later checkpoint of that origin may extend.
type ShardSeal struct {
	Origin     string `json:"origin"`
	Start      uint64 `json:"start"`
	Size       uint64 `json:"size"`
	Root       []byte `json:"root"`
	Checkpoint string `json:"checkpoint"`
}

// payloads maps each kind to its payload type.
var payloads = map[Kind]reflect.Type{
	DeviceEnrolled:     reflect.TypeFor[Enrollment](),
	EnrollmentDenied:   reflect.TypeFor[Denial](),
	CertificateIssued:  reflect.TypeFor[Certificate](),
	CertificateRenewed: reflect.TypeFor[Certificate](),
	CertificateRevoked: reflect.TypeFor[Certificate](),
	DeviceDisabled:     reflect.TypeFor[Device](),
	DeviceEnabled:      reflect.TypeFor[Device](),
	DeviceAKReplaced:   reflect.TypeFor[AKReplacement](),
	PolicyLoaded:       reflect.TypeFor[Policy](),
	KeyCreated:         reflect.TypeFor[Key](),
	KeyRotated:         reflect.TypeFor[Key](),
	KeyRetired:         reflect.TypeFor[Key](),
	TokenIssued:        reflect.TypeFor[Token](),
	TokenExchanged:     reflect.TypeFor[Token](),
	TokenRevoked:       reflect.TypeFor[Token](),

	RestoreAcknowledged: reflect.TypeFor[Restore](),
	ShardStarted:        reflect.TypeFor[ShardLink](),
}

// Known reports whether k is one of the Kind constants.
func (k Kind) Known() bool {
	_, ok := payloads[k]
	return ok
}
