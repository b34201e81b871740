package store

import (
	"context"
	"errors"
	"time"
)

// Errors callers act on. Every error a backend returns starts with
// "store: "; test for these with errors.Is.
var (
	// ErrNotFound: the record, or a record it refers to, does not exist.
	// For a lookup by a client-supplied key answer 404 / invalid_request.
	ErrNotFound = errors.New("not found")

	// ErrConflict: the write contradicts a stored record (a duplicate key,
	// an AK already bound to another EK, a certificate already revoked).
	// Do not retry; report the conflict, or treat an idempotent repeat
	// (revoking twice) as done.
	ErrConflict = errors.New("conflict")

	// ErrChallengeUsed: the challenge was already consumed. Reject the
	// request as a replay and audit it; never reissue.
	ErrChallengeUsed = errors.New("challenge already used")

	// ErrChallengeExpired: the challenge outlived its TTL. Reject the
	// request; the client starts over with a new challenge.
	ErrChallengeExpired = errors.New("challenge expired")

	// ErrDeviceDisabled: a certificate was to be issued to a disabled
	// device. Deny the request (access_denied).
	ErrDeviceDisabled = errors.New("device disabled")

	// ErrRevoked: a token was to be stored as exchanged from a token that
	// has been revoked meanwhile. Reject the exchange (invalid_request) as
	// for a revoked subject token; the new token must not be returned.
	ErrRevoked = errors.New("parent token revoked")

	// ErrCertificateRevoked: a token was to be stored bound (CNF) to a
	// certificate that has been revoked meanwhile. Refuse the request as
	// for a revoked client certificate (invalid_client); the new token
	// must not be returned.
	ErrCertificateRevoked = errors.New("certificate revoked")

	// ErrLockLost: a Lock is no longer held (its session ended). Stop the
	// work it guarded; take the lock again before resuming it.
	ErrLockLost = errors.New("lock lost")

	// ErrLimit: the write would take its owner past a bound the caller
	// set (a receiver's streams). Refuse the request; it may succeed once
	// the owner has freed some (deleted a stream).
	ErrLimit = errors.New("limit reached")
)

// Revocation reasons sigil itself records on certificates; each is stable,
// for consumers to map (CRL reason codes, CAEP reason_admin). An operator's
// or a client's revocation carries its own text.
const (
	// ReasonDeviceDisabled: SetDeviceStatus disabled the device (the kill
	// switch).
	ReasonDeviceDisabled = "device disabled"

	// ReasonAttestationFailed: the device's renewal brought authentic
	// evidence (quoted by its bound AK over the server's nonce) that no
	// longer satisfies policy, e.g. a boot into debug firmware.
	ReasonAttestationFailed = "attestation-failed"

	// ReasonAttestationExpired: the device has not attested successfully
	// within attestation.max_age.
	ReasonAttestationExpired = "attestation-expired"

	// ReasonPolicyChanged: a new policy set no longer permits the device to
	// hold the identity, judged on the evidence the certificate was issued
	// on.
	ReasonPolicyChanged = "policy-changed"
)

// CertificateRevokedPrefix starts the revocation reason of a token revoked
// because the certificate it is bound to was: the certificate's reason
// follows ("certificate revoked: device disabled").
const CertificateRevokedPrefix = "certificate revoked: "

// Store is the server's persistent state. Its write methods each run in a
// transaction of their own (see Autocommit); writes that belong together go
// through Tx:
//
//	err := st.Tx(ctx, func(tx store.Tx) error {
//		ch, err := tx.ConsumeChallenge(ctx, id, now)
//		if err != nil {
//			return err
//		}
//		...
//		return tx.InsertCertificate(ctx, cert)
//	})
type Store interface {
	Reader
	Writer

	// Tx runs fn in a write transaction: fn's writes take effect if it
	// returns nil and are undone if it returns an error, which Tx returns
	// unchanged, or panics, which Tx lets through. Tx runs fn once, on the
	// calling goroutine, and does not retry.
	//
	// fn sees its own writes; nobody else sees them before Tx returns nil.
	// A backend may run the fns of concurrent calls in one database
	// transaction (group commit, see the SQLite backend): then fn also
	// sees the writes of the fns before it, and a commit error is returned
	// to every caller whose fn was in the transaction.
	//
	// ctx: if ctx ends before fn starts, fn does not run and Tx returns
	// ctx.Err(). A statement started after ctx ended fails with ctx.Err(),
	// and if ctx has ended when fn returns nil, fn's writes are undone and
	// Tx returns ctx.Err(). Tx returning nil means committed.
	//
	// Use tx only inside fn, and only tx: a write through the Store inside
	// fn may wait until its ctx ends, for the transaction holds locks it
	// needs. Keep fn short: do slow work (verification, HSM signing)
	// before Tx.
	Tx(ctx context.Context, fn func(tx Tx) error) error

	// Ping reports whether the database answers, for /readyz.
	Ping(ctx context.Context) error

	// Close releases the database. Calls after Close fail.
	Close() error
}

// Tx is a write transaction; see Store.Tx.
type Tx interface {
	Reader
	Writer
}

// Reader looks records up. Lookups by key return ErrNotFound for a key not
// stored; lists return an empty slice, not nil.
type Reader interface {
	ChallengeReader
	DeviceReader
	CertificateReader
	EvidenceReader
	TokenReader
	RevocationFeed
	AuditReader
	LineageReader
	CRLReader
	PolicyReader
	StreamReader
}

// Writer changes records. A duplicate key is ErrConflict.
type Writer interface {
	ChallengeWriter
	DeviceWriter
	CertificateWriter
	EvidenceWriter
	TokenWriter
	AuditWriter
	SigningKeyWriter
	LineageWriter
	CRLWriter
	PolicyWriter
	StreamWriter
}

// ChallengeReader reads enrollment and renewal challenges.
type ChallengeReader interface {
	Challenge(ctx context.Context, id string) (Challenge, error)
	// ChallengeUsed reports whether UseChallenge recorded id.
	ChallengeUsed(ctx context.Context, id string) (bool, error)
}

// ChallengeWriter issues and consumes challenges.
type ChallengeWriter interface {
	// CreateChallenge stores a new, unused challenge (it ignores
	// c.ConsumedAt). A stored id is ErrConflict.
	CreateChallenge(ctx context.Context, c Challenge) error

	// ConsumeChallenge marks the challenge used at now and returns it.
	// Of any number of concurrent calls for one id, from goroutines or
	// from other processes on the same database, exactly one succeeds;
	// the others get ErrChallengeUsed. An unknown id is ErrNotFound, one
	// with ExpiresAt <= now ErrChallengeExpired. Check the returned Kind,
	// EKHash and AKHash in the same transaction. To burn a challenge on a
	// failed attempt, consume it outside the transaction that would have
	// completed it.
	ConsumeChallenge(ctx context.Context, id string, now time.Time) (Challenge, error)

	// PurgeExpiredChallenges deletes challenges that expired before the
	// given time, consumed or not, and the records of used stateless
	// challenges that expired before it, and returns how many it deleted.
	PurgeExpiredChallenges(ctx context.Context, before time.Time) (int64, error)

	// UseChallenge records that the stateless challenge id, valid until
	// expiresAt, was used. Of any number of calls for one id, from
	// goroutines or from other processes on the same database, exactly one
	// succeeds; the others get ErrChallengeUsed. Call it in the transaction
	// that completes the challenge, or alone to burn it on a failure.
	UseChallenge(ctx context.Context, id string, expiresAt time.Time) error

	// ChallengeKey returns the key that MACs stateless challenges, shared
	// by every replica on the database: candidate if none was stored yet
	// (it is stored), else the stored one.
	ChallengeKey(ctx context.Context, candidate []byte) ([]byte, error)
}

// DeviceReader reads devices.
type DeviceReader interface {
	Device(ctx context.Context, ekHash string) (Device, error)
	// Devices lists all devices by EK hash.
	Devices(ctx context.Context) ([]Device, error)
}

// DeviceWriter binds devices to their attestation keys and disables them.
type DeviceWriter interface {
	// BindDevice stores a new device (Status "" means active) or rebinds
	// a known EK to d.AKHash, keeping its status and, when d.EKCertDER is
	// nil, its EK certificate. previousAK is the AK the EK was bound to if
	// that differs from d.AKHash, else "": a non-empty previousAK is a
	// rebind for the caller to audit. An AK bound to another EK is
	// ErrConflict.
	//
	// One EK binds one AK, and every rebind is reported once, whoever
	// writes: of concurrent binds of one EK, from goroutines or processes,
	// each returns as previousAK the AK it replaced, so the rebinds form
	// one chain and no AK is reported replaced twice; of concurrent binds
	// of one AK to different EKs, exactly one succeeds.
	BindDevice(ctx context.Context, d Device, now time.Time) (previousAK string, err error)

	// SetDeviceStatus sets a device's status. Disabling it also revokes,
	// with ReasonDeviceDisabled at now, every certificate of the device
	// not yet revoked, and with them, as RevokeCertificate does, every
	// token bound to them and every token exchanged from those; it
	// returns what it revoked, for the caller to audit. Enabling a device
	// does not unrevoke anything. With InsertCertificate running
	// concurrently, from any process, no certificate of a disabled device
	// is left unrevoked: either the insert fails with ErrDeviceDisabled or
	// this revokes the certificate; and with InsertToken, no token bound
	// to one is left unrevoked (see RevokeCertificate).
	SetDeviceStatus(ctx context.Context, ekHash string, status DeviceStatus, now time.Time) (Revoked, error)
}

// CertificateReader reads issued certificates and their revocations.
type CertificateReader interface {
	Certificate(ctx context.Context, serial string) (Certificate, error)
	// CertificateByThumbprint finds a certificate by its RFC 8705
	// x5t#S256 (Certificate.Thumbprint), the cnf of the tokens bound to
	// it.
	CertificateByThumbprint(ctx context.Context, x5tS256 string) (Certificate, error)
	// DeviceCertificates lists a device's certificates, oldest first.
	DeviceCertificates(ctx context.Context, ekHash string) ([]Certificate, error)
	// CurrentDeviceCertificates lists the certificates of the device
	// ekHash neither revoked nor expired at the given time (NotAfter after
	// at), oldest first: what a change of trust in the device takes away.
	// Its cost grows with the certificates current, not with the device's
	// history (every renewal adds a certificate).
	CurrentDeviceCertificates(ctx context.Context, ekHash string, at time.Time) ([]Certificate, error)
	// DeviceIdentities lists the SPIFFE IDs, sorted and each once, that
	// the device ekHash holds at the given time: those of its certificates
	// neither revoked nor expired then, whatever the device's status. It
	// reads no certificate bodies, so its cost does not grow with the
	// size of the device's history in Go.
	DeviceIdentities(ctx context.Context, ekHash string, at time.Time) ([]string, error)
	// IdentityHolders lists the EK hashes, sorted and each once, of the
	// active devices that hold spiffeID at the given time: a certificate
	// for it that is not revoked and whose NotAfter is after at. It is the
	// fact policy decides on when a device asks for that identity; it
	// locks nothing, so a caller that must act on it reads it again in the
	// transaction that stores the new certificate (inside Tx it sees that
	// transaction's own writes and, with group commit, those before it).
	IdentityHolders(ctx context.Context, spiffeID string, at time.Time) ([]string, error)
	// Revocations lists the revoked certificates still valid at the given
	// time, by serial, for a CRL; the zero time lists them all.
	Revocations(ctx context.Context, unexpiredAt time.Time) ([]Revocation, error)
}

// CertificateWriter stores and revokes certificates.
type CertificateWriter interface {
	// InsertCertificate stores an issued certificate. Its device and
	// evidence must be stored first (else ErrNotFound) and the device
	// active (else ErrDeviceDisabled), also against a SetDeviceStatus
	// committed concurrently by another process.
	InsertCertificate(ctx context.Context, c Certificate) error

	// RevokeCertificate records a revocation, and in the same
	// transaction revokes every token bound to the certificate (whose CNF
	// is its Thumbprint) and every token exchanged from those,
	// transitively, with the reason CertificateRevokedPrefix+reason,
	// skipping tokens already revoked. It appends a RevocationEvent for
	// the certificate, then one for each token it revoked, in the order
	// of Revoked.Tokens (as RevokeToken orders a subtree, the tokens bound
	// to the certificate being the first level), and returns what it
	// revoked for the caller to audit.
	//
	// Revoking a certificate already revoked is ErrConflict and keeps the
	// first revocation: of concurrent revocations of one certificate, from
	// goroutines or processes, exactly one succeeds and its reason and
	// time are stored. An unknown serial is ErrNotFound. Against
	// InsertToken running concurrently, from any process, no token is left
	// unrevoked bound to a revoked certificate: either this commits first
	// and the insert fails with ErrCertificateRevoked, or this waits for
	// it and revokes the new token too.
	RevokeCertificate(ctx context.Context, serial, reason string, at time.Time) (Revoked, error)
}

// EvidenceReader reads attestation evidence.
type EvidenceReader interface {
	Evidence(ctx context.Context, digest string) (Evidence, error)
}

// EvidenceWriter stores attestation evidence.
type EvidenceWriter interface {
	// PutEvidence stores evidence. Storing the same evidence again is a
	// no-op; a different record under a stored digest is ErrConflict.
	PutEvidence(ctx context.Context, e Evidence) error
}

// TokenReader reads the records of issued tokens.
type TokenReader interface {
	Token(ctx context.Context, jti string) (Token, error)
	// TokenByHandle finds an opaque token by the SHA-256 of its handle.
	TokenByHandle(ctx context.Context, handleHash []byte) (Token, error)
	// TokenChildren lists the tokens exchanged directly from the token
	// jti, oldest first.
	TokenChildren(ctx context.Context, jti string) ([]Token, error)
}

// RevocationFeed reads the revocation events of tokens and certificates,
// for the feed resource servers follow.
type RevocationFeed interface {
	// RevocationEvents returns the revocation events with Seq > afterSeq,
	// in Seq order: at most limit of them, and at most
	// MaxRevocationEvents (also when limit < 1). Start a feed from
	// LatestRevocationSeq, or from the last Seq a subscriber has seen.
	RevocationEvents(ctx context.Context, afterSeq uint64, limit int) ([]RevocationEvent, error)
	// LatestRevocationSeq is the Seq of the last revocation event, 0
	// before the first. It never decreases, not even when
	// PurgeExpiredTokens deletes events.
	LatestRevocationSeq(ctx context.Context) (uint64, error)
}

// FeedNotifier is an optional power of a Store, found by type assertion:
// it tells a follower of the RevocationFeed that revocation events of any
// kind (a token's, a certificate's, a device's) have committed, so that it
// reads them at once instead of at its next poll. PostgreSQL notifies the
// commits of every process on the database (every replica); SQLite those
// of every handle on the file in this process, and a follower finds
// another process's (sigild's operator commands) at its next poll.
type FeedNotifier interface {
	// NotifyRevocations subscribes until ctx ends. Once it returns, every
	// commit that appends revocation events is followed, after COMMIT, by
	// a value on the channel: the Seq of that commit's last event (or a
	// later one), never a Seq that cannot be read. A transaction rolled
	// back notifies nothing. Values are coalesced:
	// a receiver that falls behind gets the latest Seq, not each one. The
	// channel is closed when ctx ends or the subscription breaks (a lost
	// connection); then read RevocationEvents from the last Seq seen and
	// subscribe again. A notification is a hint, never the events: read
	// them from RevocationEvents, and keep polling as the fallback.
	NotifyRevocations(ctx context.Context) (<-chan uint64, error)
}

// Locker is an optional power of a Store, found by type assertion: named
// locks shared by every process on the database (every replica), for work
// done by one replica at a time: the audit checkpoint publisher's lease,
// `sigild init`'s key creation. A store without it serves one process,
// which holds every lock.
type Locker interface {
	// TryLock takes the lock name if no session holds it, without waiting:
	// ok is false (and l nil) if another holds it.
	TryLock(ctx context.Context, name string) (l Lock, ok bool, err error)
	// Lock takes the lock name, waiting for it until ctx ends.
	Lock(ctx context.Context, name string) (Lock, error)
}

// Lock is a lock a Locker gave. It is held by a database session of its
// own, kept alive by its holder: if the holder stops answering for
// LockTTL (a process paused or cut off from the database), the database
// ends the session and another may take the lock. A holder about to act on
// the lock checks Held first; work whose repetition would do harm must
// still be fenced in the database, as a paused holder may act after Held.
type Lock interface {
	// Held returns nil if the lock is still held, asking the database, and
	// ErrLockLost (wrapped) once it is not: the lock is never held again,
	// take a new one.
	Held(ctx context.Context) error
	// Unlock releases the lock, if still held.
	Unlock()
}

// LockTTL bounds how long a Lock outlives a holder that stopped answering.
const LockTTL = 3 * time.Second

// TokenWriter records issued tokens and revokes them.
type TokenWriter interface {
	// InsertToken stores the record of an issued token, unrevoked (it
	// ignores t.RevokedAt and t.RevocationReason); t must pass t.Check.
	// Call it in the Tx that appends the token's audit entry, before
	// returning the token. A duplicate JTI or HandleHash is ErrConflict. A
	// CNF that is the Thumbprint of a revoked certificate is
	// ErrCertificateRevoked. A ParentJTI not stored is ErrNotFound, one
	// revoked ErrRevoked, and a token that would expire after its parent
	// ErrConflict: lifetimes only narrow.
	//
	// The token is bound to the stored certificate whose Thumbprint is its
	// CNF, and revoked with it (RevokeCertificate). The token service binds
	// every token to the caller's certificate, which is stored; a CNF that
	// names no stored certificate binds the token to none.
	//
	// Against a RevokeToken of an ancestor, or a RevokeCertificate of the
	// token's certificate, running concurrently, from any process, no
	// token is left unrevoked under a revoked parent or bound to a revoked
	// certificate: either the revocation commits first and this fails with
	// ErrRevoked or ErrCertificateRevoked, or it waits for this and
	// revokes the new token too.
	InsertToken(ctx context.Context, t Token) error

	// InsertExternalToken stores the record of an external issuer's
	// subject token (Kind TokenExternal), unrevoked, unless a record of
	// its JTI is stored: then it does nothing, whatever that record says,
	// revoked or not. Call it in the Tx that inserts a token exchanged from
	// it (ParentJTI: t.JTI), before InsertToken, which then refuses the
	// token if the external one was revoked; or before RevokeToken, to
	// revoke an external token whether or not anything was exchanged from
	// it yet. A record of another kind is an error.
	InsertExternalToken(ctx context.Context, t Token) error

	// RevokeToken revokes, with reason at the given time, the token jti
	// and every token exchanged from it, transitively, skipping those
	// already revoked; it appends one RevocationEvent for each token it
	// revokes, in the order it returns them: jti first, then by depth
	// below jti, and by jti within a depth. An unknown jti is ErrNotFound.
	// Revoking a revoked token again revokes nothing and returns an empty
	// list, not an error (RFC 7009: revocation is idempotent); its
	// subtree was revoked with it, as InsertToken refuses children of a
	// revoked token.
	//
	// Under concurrency, from goroutines or processes: every token is
	// revoked by exactly one call, which alone returns it and appends its
	// one event; tokens inserted concurrently under the subtree are
	// revoked too (see InsertToken); and events are numbered densely, in
	// the order the revocations commit, each call's events in a row.
	RevokeToken(ctx context.Context, jti, reason string, at time.Time) (revoked []string, err error)

	// PurgeExpiredTokens deletes the tokens that expired before the given
	// time, revoked or not, with their revocation events, and returns how
	// many tokens it deleted. As no token outlives its parent, it deletes
	// whole subtrees: no live token loses the parent its revocation
	// cascades from.
	PurgeExpiredTokens(ctx context.Context, before time.Time) (int64, error)
}

// AuditReader reads the audit log. AuditStorage adapts it, with
// AuditWriter, to the audit package's Storage.
type AuditReader interface {
	// AuditSize is the number of entries in the audit log.
	AuditSize(ctx context.Context) (uint64, error)
	// AuditEntries returns the Data of the entries with index in
	// [start, end): end-start of them, in index order, at most
	// MaxAuditRange. An index past the log is ErrNotFound.
	AuditEntries(ctx context.Context, start, end uint64) ([][]byte, error)
	// AuditLeafHashes is AuditEntries for the entries' leaf hashes.
	AuditLeafHashes(ctx context.Context, start, end uint64) ([][]byte, error)
	// AuditNodeHashes is AuditEntries for the RFC 6962 hashes of the
	// perfect subtrees of 2^level entries [start << level, end << level),
	// at a level that is a positive multiple of AuditTileHeight below 64.
	// Every complete one is stored: a node past the log is ErrNotFound.
	AuditNodeHashes(ctx context.Context, level uint, start, end uint64) ([][]byte, error)
	// AuditIndex returns the index of the entry stored with key.
	AuditIndex(ctx context.Context, key string) (uint64, error)
	// LatestCheckpoint returns the note of the checkpoint of the largest
	// tree size, or nil when there is none.
	LatestCheckpoint(ctx context.Context) ([]byte, error)
	// Checkpoints lists the stored checkpoints, smallest size first.
	Checkpoints(ctx context.Context) ([]Checkpoint, error)
	// Cosignatures returns the witness cosignature lines stored for the
	// checkpoint of size (AddCosignature), ordered by witness, or none.
	Cosignatures(ctx context.Context, size uint64) ([][]byte, error)
	// AuditShards lists the shards of the log (StartAuditShard), by
	// start; none while the log is not sharded.
	AuditShards(ctx context.Context) ([]AuditShard, error)
	// AuditShardNodeHashes is AuditNodeHashes for the tree of the shard
	// starting at global index shard, at shard-local indices: the entries
	// [shard + start << level, shard + end << level). For shard 0 it is
	// AuditNodeHashes. A node past the shard's entries is ErrNotFound.
	AuditShardNodeHashes(ctx context.Context, shard uint64, level uint, start, end uint64) ([][]byte, error)
	// AuditArchived lists the starts of the archived shards
	// (ArchiveAuditShard), smallest first.
	AuditArchived(ctx context.Context) ([]uint64, error)
}

// AuditWriter appends to the audit log and stores its checkpoints.
type AuditWriter interface {
	// AppendAudit appends e to the audit log under the next index, which
	// it returns, stores e.Keys to find it by, and stores the tree nodes
	// the entry completes (CompletedAuditNodes); it ignores e.Index. Call
	// it in the Tx of the operation e records, so that neither takes
	// effect without the other. A key already stored is ErrConflict, and
	// then nothing of e is stored, even if the Tx goes on.
	//
	// Indices are dense, gap-free and in commit order whoever appends,
	// goroutines or processes: the index comes from a coordinator row
	// updated in the appending transaction (never max(index)+1, never a
	// sequence), so a Tx that fails uses none up and two writers never get
	// the same one.
	AppendAudit(ctx context.Context, e AuditEntry) (index uint64, err error)

	// PutCheckpoint stores the signed checkpoint note of the tree of the
	// first size entries, fenced: only if size exceeds the size of every
	// stored checkpoint, decided in the transaction that stores it. Storing
	// the same note again is a no-op. Another note for a stored size, or a
	// size not above the latest stored one, is ErrConflict: another replica
	// checkpointed that size or a larger one first; do not publish this
	// note, use LatestCheckpoint. A size past the log is ErrNotFound.
	//
	// Under concurrency, from goroutines or processes: once a PutCheckpoint
	// of size s has returned nil, no PutCheckpoint of a size <= s that
	// starts later succeeds with another note, so a publisher paused past
	// its lease can never record a second root for a size already signed,
	// nor an older one after a newer.
	PutCheckpoint(ctx context.Context, size uint64, note []byte) error

	// AddCosignature stores witness's cosignature of the stored checkpoint
	// of size: line is one signed-note signature line ("— name base64\n",
	// CheckSignatureLine), which the caller has verified against the
	// checkpoint and the witness's key; witness names that key
	// ("name+keyid"). A witness cosigns a checkpoint once: if one is stored
	// for witness and size, it is kept and this is a no-op. No checkpoint
	// of size is ErrNotFound. Stored checkpoint notes never change: the
	// cosigned note is the stored note followed by Cosignatures.
	AddCosignature(ctx context.Context, size uint64, witness string, line []byte) error

	// StartAuditShard ends the current shard of the log at its size M and
	// starts a shard named name with origin there, at global index M,
	// which it returns: from then on AppendAudit appends to the new shard
	// and stores the nodes of the new shard's tree (AuditShardNodeHashes).
	// It takes the lock AppendAudit takes, so every entry is in exactly
	// one shard: appends that commit before it are below M, the others at
	// or above. Call it in a Tx that appends the new shard's first entry
	// (audit.ShardStarted), so that no shard is ever empty. A name or
	// origin already used, or a shard already starting at M, is
	// ErrConflict.
	StartAuditShard(ctx context.Context, name, origin string, at time.Time) (start uint64, err error)

	// ArchiveAuditShard deletes the entries [start, end) of the sealed
	// shard starting at start and ending at end (the next shard's start),
	// with their keys and the nodes of the shard's tree, and records the
	// shard as archived; its row and checkpoints stay. Call it once its
	// export is kept elsewhere. The schema refuses it for a shard not
	// sealed, and refuses every other delete of the log. An archived
	// shard is ErrConflict.
	ArchiveAuditShard(ctx context.Context, start, end uint64, at time.Time) error
}

// CRL is a signed certificate revocation list that replicas share: one
// produces it, every replica serves it (see the daemon's CRL).
type CRL struct {
	// Number is the CRL number it carries; each stored CRL's is larger
	// than the last.
	Number uint64
	// RevocationSeq is LatestRevocationSeq when it was produced: a later
	// one means revocations it does not list may have committed.
	RevocationSeq uint64
	// ProducedAt is its thisUpdate.
	ProducedAt time.Time
	// DER is the signed CRL.
	DER []byte
}

// CRLReader reads the stored CRL.
type CRLReader interface {
	// LatestCRL returns the CRL stored last; ErrNotFound before the first.
	LatestCRL(ctx context.Context) (CRL, error)
}

// CRLWriter stores the CRL, so that one replica produces it and all serve
// it.
type CRLWriter interface {
	// PutCRL stores c, fenced: only if c.Number exceeds the Number of the
	// stored CRL, decided in the statement that stores it; else it is
	// ErrConflict (another replica produced one first: serve LatestCRL).
	// An empty DER is an error. Under concurrency, from any process, of
	// PutCRLs of one Number exactly one succeeds.
	PutCRL(ctx context.Context, c CRL) error
}

// SigningKeyWriter records the signing keys of the token service.
type SigningKeyWriter interface {
	// FirstSeen records now as the time the signing key kid was first
	// seen, unless one is recorded, and returns the recorded time: the
	// token service's key rotation schedule derives from it on every
	// replica alike. Concurrent first sightings, from any process, all
	// return the one time recorded. An empty kid is an error.
	FirstSeen(ctx context.Context, kid string, now time.Time) (time.Time, error)
}

// LineageReader reads the identity of the database's lineage.
type LineageReader interface {
	// Epoch returns the database's epoch: a random, non-empty string
	// created with the database (a database migrated from before epochs
	// gets one) and replaced only by NewEpoch. Copies of a database share
	// its epoch; the revocation feed names its events with it, so that a
	// subscriber tells a feed whose sequence numbers restarted (a restored
	// database) from the one it followed.
	Epoch(ctx context.Context) (string, error)
}

// LineageWriter starts a new lineage.
type LineageWriter interface {
	// NewEpoch replaces the database's epoch with a new random one, which
	// it returns, never one this or any other database returned before.
	// Call it in the Tx that audits an acknowledged restore: the database
	// restored from a copy is from then on a lineage of its own, whose
	// feed subscribers resynchronise rather than skip the events whose
	// sequence numbers they saw in the lost one.
	NewEpoch(ctx context.Context) (string, error)
}

// AppliedPolicy records a policy set the fleet was re-evaluated under: the
// devices and identities it no longer permits were revoked in the
// transaction that stored it.
type AppliedPolicy struct {
	// Seq numbers the applications; each stored one's is larger than the
	// last.
	Seq uint64
	// Version is the policy set's version (its content hash).
	Version   string
	AppliedAt time.Time
}

// PolicyReader reads the policy set last applied to the fleet.
type PolicyReader interface {
	// AppliedPolicy returns the application stored last; ErrNotFound
	// before the first.
	AppliedPolicy(ctx context.Context) (AppliedPolicy, error)
}

// PolicyWriter records policy applications, so that of the replicas that
// load a new policy set one re-evaluates the fleet under it.
type PolicyWriter interface {
	// PutAppliedPolicy stores p, fenced: only if p.Seq exceeds the Seq of
	// the stored application, decided in the statement that stores it;
	// else it is ErrConflict (another replica applied a set first: roll
	// back what this one revoked and read AppliedPolicy again). An empty
	// Version is an error. Under concurrency, from any process, of
	// PutAppliedPolicys of one Seq exactly one succeeds.
	PutAppliedPolicy(ctx context.Context, p AppliedPolicy) error
}
