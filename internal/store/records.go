package store

import "time"

// Times are stored as microseconds since the Unix epoch, the precision
// PostgreSQL keeps, and come back in UTC: a time round-trips equal to
// t.UTC().Truncate(time.Microsecond).

// DeviceStatus says whether a device may hold certificates.
type DeviceStatus string

// Device statuses.
const (
	DeviceActive   DeviceStatus = "active"
	DeviceDisabled DeviceStatus = "disabled"
)

// Device is a TPM known by its endorsement key, with the attestation key it is
// bound to. One EK binds one AK at a time.
type Device struct {
	EKHash      string // hex SHA-256 of the EK public key DER; primary key
	EKCertDER   []byte // nil when the EK was admitted by hash, without a certificate
	EKPublicDER []byte
	AKHash      string // hex SHA-256 of AKPublic; unique across devices
	AKPublic    []byte // TPM2B_PUBLIC
	Status      DeviceStatus
	CreatedAt   time.Time
	UpdatedAt   time.Time
}

// ChallengeKind is the flow a challenge was issued for.
type ChallengeKind string

// Challenge kinds.
const (
	ChallengeEnroll ChallengeKind = "enroll"
	ChallengeRenew  ChallengeKind = "renew"
)

// Challenge is a single-use, short-lived credential activation challenge.
// The activation secret itself is never stored, only its SHA-256.
type Challenge struct {
	ID         string // random, chosen by the caller
	EKHash     string
	AKHash     string
	Nonce      []byte
	SecretHash []byte // SHA-256 of the activation secret
	SPIFFEID   string // identity requested
	Kind       ChallengeKind
	Pending    []byte // opaque JSON: the server's pending state, may be nil
	CreatedAt  time.Time
	ExpiresAt  time.Time
	ConsumedAt *time.Time // nil until consumed
}

// Certificate is an issued X.509-SVID.
type Certificate struct {
	Serial           string // hex; unique
	SPIFFEID         string
	EKHash           string // the device holding the key
	NotBefore        time.Time
	NotAfter         time.Time
	EvidenceDigest   string // the Evidence the certificate was issued on
	PolicyVersion    string
	DER              []byte
	RevokedAt        *time.Time // nil while not revoked
	RevocationReason string
}

// Revocation is one entry of a certificate revocation list.
type Revocation struct {
	Serial    string
	RevokedAt time.Time
	Reason    string
}

// Evidence is the attestation evidence a certificate was issued on, kept so
// that auditors can re-verify it offline.
type Evidence struct {
	Digest    string // primary key, computed by the caller over Bundle
	EKHash    string
	Kind      string
	Bundle    []byte // opaque JSON
	CreatedAt time.Time
}
