// Package store is the contract of the server's persistent state:
// enrollment challenges, devices, certificates, attestation evidence, the
// audit log, the issued access tokens with their revocations, and the
// signing keys' first sightings.
//
// The package holds no database code. It has
//
//   - the records (Device, Challenge, Certificate, Evidence, Token,
//     RevocationEvent, AuditEntry, Checkpoint) and their invariants
//     (Token.Check);
//   - the errors callers act on, each saying what to do (ErrNotFound,
//     ErrConflict, ErrChallengeUsed, ErrChallengeExpired, ErrDeviceDisabled,
//     ErrRevoked, ErrCertificateRevoked, ErrLockLost, ErrLimit);
//   - the interfaces, split by what consumers need: a reader and a writer
//     per domain (ChallengeReader/ChallengeWriter, DeviceReader/
//     DeviceWriter, CertificateReader/CertificateWriter, EvidenceReader/
//     EvidenceWriter, TokenReader/TokenWriter, RevocationFeed, AuditReader/
//     AuditWriter, SigningKeyWriter, PolicyReader/PolicyWriter), Reader and
//     Writer made of them, and Tx
//     and Store made of those. A consumer takes the smallest one it uses:
//     the token feed a RevocationFeed, device facts a DeviceReader and an
//     EvidenceReader, the CRL a CertificateReader, key rotation a
//     SigningKeyWriter; the services that write a state change with its
//     audit entry take a Store for Tx;
//   - helpers every backend shares: Autocommit (a Store's write methods as
//     one Tx each), AuditStorage (the audit package's Storage over a Store
//     or a Tx, which audit.Log reads and the HTTP API serves through it),
//     CompletedAuditNodes (which tree nodes an append completes);
//   - the bridge from the audit package's entries (auditentry.go):
//     NewAuditEntry encodes one, AppendAuditEntries appends entries in the
//     operation's Tx, RecordAudit appends one in a Tx of its own.
//
// Each write method's doc says what holds under concurrency: from
// goroutines of one process, and from several processes (replicas)
// writing one database. Backends must keep those promises with their
// database's own means (a conditional UPDATE … WHERE and its row count, a
// unique constraint, a coordinator row updated in the transaction), never
// by relying on one writer at a time.
//
// # Backends
//
// Each backend is a package beside this one: internal/store/sqlite (an
// embedded file, the default, one process) and internal/store/postgres
// (several replicas on one database). internal/store/backend opens the one
// a DSN names. Optional powers a backend may have, found by type
// assertion: FeedNotifier (revocations notified as they commit: across
// replicas on PostgreSQL, across the handles of a process on SQLite).
//
// To add a backend: implement Store (embed Autocommit for the write
// methods, use Token.Check and CompletedAuditNodes), then run the
// conformance suite from a test of the backend's package:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, storetest.Backend{New: newDatabase, Open: open})
//	}
//
// internal/store/storetest is black-box and covers every method and every
// invariant above with concurrent writers: goroutines on one handle, several
// handles (pools) on one database, and several OS processes. A backend
// that passes it is a drop-in for the others; add it to
// internal/store/backend.
package store
