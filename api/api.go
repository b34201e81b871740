// Package api holds the JSON messages of sigil's HTTP API, shared by the
// server and by workloads. Binary fields are base64 (encoding/json's []byte).
// TPM structures travel in their TPM 2.0 wire encodings, as go-attestation
// produces and consumes them.
package api

import "time"

// Paths of the enrollment endpoints.
const (
	PathChallenge = "/v1/enroll/challenge"
	PathComplete  = "/v1/enroll/complete"
	PathRenew     = "/v1/renew"
	PathBundle    = "/v1/bundle"
	PathCRL       = "/v1/crl"
	// PathSPIFFEBundle serves the trust bundle in the SPIFFE bundle
	// format (a JWK Set with x509-svid and jwt-svid keys), for federation.
	PathSPIFFEBundle = "/v1/spiffe-bundle"
	// PathIssuerCert serves the issuing CA certificate, DER: the caIssuers
	// URL in every certificate (RFC 5280 §4.2.2.1).
	PathIssuerCert = "/v1/issuer.crt"
)

// MaxRequestBytes bounds every request body sigil accepts on the enrollment
// endpoints; an event log is the largest part.
const MaxRequestBytes = 1 << 20

// AK is a TPM attestation key's public area and its creation evidence
// (go-attestation's AttestationParameters).
type AK struct {
	Public            []byte `json:"public"`             // TPMT_PUBLIC
	CreateData        []byte `json:"create_data"`        // TPMS_CREATION_DATA
	CreateAttestation []byte `json:"create_attestation"` // TPMS_ATTEST
	CreateSignature   []byte `json:"create_signature"`   // TPMT_SIGNATURE
}

// ChallengeRequest starts an enrollment.
type ChallengeRequest struct {
	// EKCertificate is the DER EK certificate; it may be empty when the EK
	// public key is allow-listed instead.
	EKCertificate []byte `json:"ek_certificate,omitempty"`
	// EKPublic is the EK public key, PKIX DER.
	EKPublic []byte `json:"ek_public"`
	AK       AK     `json:"ak"`
	// Identity is the requested SPIFFE ID.
	Identity string `json:"identity"`
	// ReplaceAK asks to bind the device's EK to this AK although it is
	// bound to another: the explicit, audited replacement of the host's
	// AK. Without it an enrollment with an AK other than the device's is
	// refused (ak_mismatch), because every identity the device holds
	// renews with its one AK.
	ReplaceAK bool `json:"replace_ak,omitempty"`
}

// Challenge is the server's answer: a credential only the TPM holding both
// the EK and the AK can activate, and the nonce every later proof must carry.
type Challenge struct {
	ID         string    `json:"challenge_id"`
	Credential []byte    `json:"credential"`       // TPM2B_ID_OBJECT
	Secret     []byte    `json:"encrypted_secret"` // TPM2B_ENCRYPTED_SECRET
	Nonce      []byte    `json:"nonce"`
	PCRs       []int     `json:"pcrs"` // SHA-256 PCRs the quote must cover
	ExpiresAt  time.Time `json:"expires_at"`
	// AKHash, in a renewal challenge, is the hex SHA-256 of the TPMT_PUBLIC
	// of the AK the device is bound to: the one the quote must come from.
	AKHash string `json:"ak_hash,omitempty"`
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

// Platform is the boot state: quotes over PCRs and the event log that
// explains them.
type Platform struct {
	Quotes   []Quote `json:"quotes"`
	PCRs     []PCR   `json:"pcrs"`
	EventLog []byte  `json:"event_log"`
}

// CertifiedKey is an application key and its certification by the AK
// (go-attestation's CertificationParameters).
type CertifiedKey struct {
	Public            []byte `json:"public"`             // TPMT_PUBLIC
	CreateData        []byte `json:"create_data"`        // TPMS_CREATION_DATA
	CreateAttestation []byte `json:"create_attestation"` // TPMS_ATTEST
	CreateSignature   []byte `json:"create_signature"`   // TPMT_SIGNATURE
}

// CompleteRequest proves the challenge and asks for the certificate.
type CompleteRequest struct {
	ChallengeID string       `json:"challenge_id"`
	Secret      []byte       `json:"secret"` // the activated credential
	Platform    Platform     `json:"platform"`
	Key         CertifiedKey `json:"key"`
	CSR         []byte       `json:"csr"` // DER, signed by Key
	// ServerAuth asks for the serverAuth extended key usage too, for a
	// workload that also serves mTLS with its X.509-SVID. Renewals keep it.
	ServerAuth bool `json:"server_auth,omitempty"`
	// Workload, sent by a host agent, is what it asserts about the local
	// process that asked for this identity.
	Workload *Workload `json:"workload,omitempty"`
}

// Workload is what a host agent (sigil agent --host) asserts about the local
// process it enrolls or renews for, read from the kernel's credentials of
// the process's Unix socket connection and from /proc. The TPM does not sign
// it: the server records it as asserted by the host's agent, and it is as
// true as the host's root is honest.
type Workload struct {
	UID       uint32 `json:"uid"`
	GID       uint32 `json:"gid"`
	User      string `json:"user,omitempty"` // the name of UID on the host, if it has one
	PID       int32  `json:"pid"`
	Exe       string `json:"exe"`            // the executable's path, /proc/PID/exe
	ExeSHA256 string `json:"exe_sha256"`     // hex SHA-256 of the executable
	Cgroup    string `json:"cgroup"`         // the unified (v2) cgroup path
	Unit      string `json:"unit,omitempty"` // the systemd unit of Cgroup, if any
}

// Certificate is an issued X.509-SVID.
type Certificate struct {
	// Chain is the leaf followed by the issuing CA, DER.
	Chain          [][]byte  `json:"chain"`
	SPIFFEID       string    `json:"spiffe_id"`
	ExpiresAt      time.Time `json:"expires_at"`
	EvidenceDigest string    `json:"evidence_digest"`
	PolicyVersion  string    `json:"policy_version"`
}

// Error is the body of every non-2xx answer outside the OAuth endpoints.
type Error struct {
	// Code is stable and machine-readable, e.g. "policy_denied".
	Code string `json:"error"`
	// Description tells a person what to fix.
	Description string `json:"error_description"`
}

// PathRenewChallenge starts a renewal; like PathRenew it needs the current
// X.509-SVID as the TLS client certificate.
const PathRenewChallenge = "/v1/renew/challenge"

// RenewRequest proves the device still boots as policy requires: a fresh
// quote by the AK pinned at enrollment, and a CSR by the certificate's key.
type RenewRequest struct {
	ChallengeID string   `json:"challenge_id"`
	Platform    Platform `json:"platform"`
	CSR         []byte   `json:"csr"`
	// AKHash is the hex SHA-256 of the TPMT_PUBLIC of the AK that made the
	// quote, so that a quote by a replaced AK is named as such.
	AKHash string `json:"ak_hash,omitempty"`
	// Workload is as in CompleteRequest.
	Workload *Workload `json:"workload,omitempty"`
}

// Audit log endpoints. Entries are returned as JSON {"entries": [base64…]},
// at most MaxAuditEntries per call; proofs as AuditProof.
const (
	PathAuditCheckpoint  = "/v1/audit/checkpoint"
	PathAuditEntries     = "/v1/audit/entries"     // ?start=&end=
	PathAuditInclusion   = "/v1/audit/inclusion"   // ?index=&size=, or ?serial=, or ?jti=
	PathAuditConsistency = "/v1/audit/consistency" // ?from=&to=
	MaxAuditEntries      = 1000
)

// The audit log as C2SP tlog-tiles (https://c2sp.org/tlog-tiles), under
// PathLog: PathLog+"checkpoint", PathLog+"tile/L/N[.p/W]" (hash tiles,
// public) and PathLog+"tile/entries/N[.p/W]" (entry bundles, served only
// to audit.readers over mTLS, as the entries of PathAuditEntries).
//
// A log sharded by time serves its current shard there, every shard under
// PathLogShard+NAME+"/" with the same paths, and the chain of shards at
// PathLogShards (LogShards).
const (
	PathLog           = "/log/"
	PathLogCheckpoint = PathLog + "checkpoint"
	PathLogShards     = PathLog + "shards"
	PathLogShard      = PathLog + "shard/"
)

// LogShards is the chain of shards of a log sharded by time, oldest first:
// each shard's first entry commits to the previous one's final
// checkpoint.
type LogShards struct {
	Shards []LogShard `json:"shards"`
}

// LogShard is one shard of the log: its name (its path under
// PathLogShard), origin, the global index of its first entry, its size
// (of Checkpoint, its latest checkpoint: the final one once sealed),
// whether it is sealed (the next shard has started), and whether it is
// archived (its entries were deleted from the server once exported: its
// tiles are no longer served; auditors verify its export).
type LogShard struct {
	Name       string `json:"name"`
	Origin     string `json:"origin"`
	Start      uint64 `json:"start"`
	Size       uint64 `json:"size"`
	Sealed     bool   `json:"sealed"`
	Archived   bool   `json:"archived,omitempty"`
	Checkpoint string `json:"checkpoint,omitempty"`
}

// AuditEntries is a page of log entries, in index order.
type AuditEntries struct {
	Entries [][]byte `json:"entries"`
}

// AuditProof is an inclusion or consistency proof (RFC 6962 hashes).
type AuditProof struct {
	Index  uint64   `json:"index,omitempty"`
	From   uint64   `json:"from,omitempty"`
	Size   uint64   `json:"size"`
	Hashes [][]byte `json:"hashes"`
	// Shard names the sealed shard of a log sharded by time the entry
	// found by serial or jti is in: Index and Size are then within it,
	// the proof is against its final Checkpoint (with the witnesses'
	// cosignatures). Empty: the current shard, or a log not sharded.
	Shard      string `json:"shard,omitempty"`
	Checkpoint string `json:"checkpoint,omitempty"`
}
