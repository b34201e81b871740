package store

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/sigil-dev/sigil/token"
)

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

// Thumbprint is the certificate's RFC 8705 x5t#S256: the cnf of every
// token bound to it.
func (c Certificate) Thumbprint() string { return token.Thumbprint(c.DER) }

// Revoked is what a certificate revocation revoked (RevokeCertificate,
// SetDeviceStatus), in the order of its revocation events: the
// certificates by serial, sorted, then the tokens bound to them and every
// token exchanged from those, by jti.
type Revoked struct {
	Certificates []string
	Tokens       []string
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

// Token kinds.
const (
	TokenJWT    = "jwt"    // an RFC 9068 JWT access token
	TokenOpaque = "opaque" // a reference token, resolved by introspection through its handle
	TokenTxn    = "txn"    // a transaction token (a JWT)

	// TokenExternal is an external issuer's subject token (a user IdP's)
	// recorded as the root of the tokens exchanged from it, so that
	// revoking it revokes them. Its JTI starts with ExternalPrefix; it has
	// no parent, client, cnf or kid.
	TokenExternal = "external"
)

// ExternalPrefix starts the JTI of a TokenExternal record, and no other.
const ExternalPrefix = "ext:"

// Token is the record of an issued access token. The token itself is never
// stored: a JWT is found by its jti, an opaque token by the SHA-256 of its
// handle.
type Token struct {
	JTI string // primary key

	// ParentJTI is the jti of the subject token this one was exchanged
	// from, a stored token (a TokenExternal one for a subject token from an
	// external issuer); "" for a root token (client credentials, or a
	// TokenExternal record). Revoking a token revokes every token
	// exchanged from it, transitively.
	ParentJTI string

	Sub       string
	ClientID  string   // the caller's SPIFFE ID
	Act       []string // the act chain, outermost actor first; empty reads back as nil
	Aud       []string // empty reads back as nil
	Scope     string
	IssuedAt  time.Time
	ExpiresAt time.Time // after IssuedAt; not after the parent's ExpiresAt
	CNF       string    // x5t#S256 of the holder's certificate
	Kind      string    // TokenJWT, TokenOpaque, TokenTxn or TokenExternal

	// HandleHash is the SHA-256 of an opaque token's handle, unique; nil
	// for a JWT. It is set exactly when Kind is TokenOpaque.
	HandleHash []byte

	KID              string     // the key that signed the token
	RevokedAt        *time.Time // nil while not revoked
	RevocationReason string
}

// Check reports what makes t unfit to be stored, with an error that says
// what is wrong; backends call it before they write t (the schema's own
// constraints are the second line). Times compare at the precision stored.
func (t Token) Check() error {
	switch {
	case t.JTI == "":
		return errors.New("no jti")
	case t.ParentJTI == t.JTI:
		return errors.New("exchanged from itself")
	case t.Kind != TokenJWT && t.Kind != TokenOpaque && t.Kind != TokenTxn && t.Kind != TokenExternal:
		return fmt.Errorf("kind %q, want %q, %q, %q or %q", t.Kind, TokenJWT, TokenOpaque, TokenTxn, TokenExternal)
	case (t.Kind == TokenExternal) != strings.HasPrefix(t.JTI, ExternalPrefix):
		return fmt.Errorf("a %s token with jti %q: the jti of an external one, and only its, starts with %q", t.Kind, t.JTI, ExternalPrefix)
	case t.Kind == TokenExternal && (t.ParentJTI != "" || t.ClientID != "" || t.CNF != "" || t.KID != ""):
		return errors.New("an external token with a parent, client, cnf or kid")
	case (t.Kind == TokenOpaque) != (t.HandleHash != nil):
		return fmt.Errorf("a %s token with a handle hash of %d bytes: an opaque token has one, a JWT none", t.Kind, len(t.HandleHash))
	case t.HandleHash != nil && len(t.HandleHash) != 32:
		return fmt.Errorf("handle hash is %d bytes, want 32", len(t.HandleHash))
	case !t.ExpiresAt.Truncate(time.Microsecond).After(t.IssuedAt.Truncate(time.Microsecond)):
		return errors.New("expires before it is issued")
	}
	return nil
}

// CheckExternal makes InsertExternalToken's checks of t, an external
// token's record, with the error a backend's InsertExternalToken returns.
func (t Token) CheckExternal() error {
	err := t.Check()
	if err == nil && t.Kind != TokenExternal {
		err = fmt.Errorf("a %s token, want %s", t.Kind, TokenExternal)
	}
	if err != nil {
		return fmt.Errorf("store: insert external token %q: %w", t.JTI, err)
	}
	return nil
}

// RevocationEvent is one entry of the revocation feed: a token revoked
// (JTI set) or a certificate revoked (Serial, Thumbprint and NotAfter
// set).
type RevocationEvent struct {
	// Seq numbers the events from 1, in the order their revocations
	// committed, without gaps as assigned; PurgeExpiredTokens removes the
	// events of the tokens it purges. A certificate's event is kept.
	Seq uint64
	JTI string // the token revoked; "" for a certificate's event

	// The certificate revoked, for a certificate's event: its serial, its
	// x5t#S256 (Certificate.Thumbprint) and when it expires.
	Serial     string
	Thumbprint string
	NotAfter   time.Time

	RevokedAt time.Time
	Reason    string
}

// MaxRevocationEvents is the most events one RevocationEvents call
// returns.
const MaxRevocationEvents = 1000

// AuditEntry is an entry of the audit log.
type AuditEntry struct {
	Index     uint64   // 0-based position in the log, assigned by AppendAudit
	Data      []byte   // the entry, as the Merkle tree hashes it
	LeafHash  []byte   // RFC 6962 leaf hash of Data, 32 bytes, computed by the caller
	Keys      []string // unique across the log: "serial:ab12", "jti:…"
	CreatedAt time.Time
}

// Check reports what makes e unfit to be appended; backends call it
// before they write e, as Token.Check.
func (e AuditEntry) Check() error {
	if len(e.LeafHash) != 32 {
		return fmt.Errorf("leaf hash is %d bytes, want 32", len(e.LeafHash))
	}
	return nil
}

// Checkpoint is a signed checkpoint note of the tree of the first Size
// entries.
type Checkpoint struct {
	Size uint64
	Note []byte
}

// AuditShard is one shard of the audit log: a log of its own, with its
// own origin and tree, over the global indices from Start up to the next
// shard's Start (the current shard: up to the log's size).
type AuditShard struct {
	Start     uint64
	Name      string
	Origin    string
	CreatedAt time.Time
	// Archived: its entries were deleted once exported (ArchiveAuditShard;
	// set by Shards).
	Archived bool
}

// MaxAuditRange is the most items one AuditEntries, AuditLeafHashes or
// AuditNodeHashes call returns: ask for a longer range in pieces.
const MaxAuditRange = 100_000
