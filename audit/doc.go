// Package audit is sigil's tamper-evident log: typed entries in an RFC 6962
// Merkle tree, checkpoints signed by an HSM key, inclusion and consistency
// proofs, and the offline auditor. It does not store anything itself: the
// server appends entries to its database in the transaction of the
// operation each records, and the Log reads them through Storage.
//
// # Who owns what
//
// The log has one owner, this package, and its pieces meet only through the
// interfaces it defines:
//
//	write   internal/store  NewAuditEntry encodes an Entry (Encode, LeafHash);
//	                        AppendAuditEntries appends it in the store.Tx of the
//	                        operation it records (internal/enroll and
//	                        internal/tokens, internal/device's SetStatus,
//	                        sigild's key and policy events), so an operation
//	                        whose entry fails does not take effect
//	store   internal/store  AuditStorage: this package's Storage, with the
//	                        optional CheckpointLister, NodeHashReader and Finder
//	sign    Log             integrates new entries, checks them against the
//	                        stored hashes and signs checkpoints (HSM key via
//	                        crypto.Signer)
//	serve   Log             Checkpoint, Entries, Find, InclusionProof,
//	                        ConsistencyProof, Tile, EntryBundle:
//	                        internal/server's audit and /log/ routes read
//	                        the log only through these
//	export  WriteExport     sigild audit export; DirSource reads it back
//	audit   Verify          sigil audit verify, reading a Source (client's
//	                        AuditSource over HTTPS, or a DirSource); the
//	                        enrollment and renewal evidence in the entries is
//	                        re-verified by attest.LogChecker as OnEntry
//
// Nothing here imports the store, the server or attest: the store and the
// server depend on this package, never the reverse, and the auditor's CLI
// links no server code.
//
// # Entries
//
// An entry (Entry, Encode, Decode) is one line of compact JSON:
//
//	{"kind":"certificate.issued","time":"2025-06-01T12:00:00.123Z","data":{...}}
//
// kind is one of the Kind constants; time is RFC 3339 in UTC, with
// fractional seconds only when there are any; data is the payload of the
// kind's type (Enrollment, Denial, Certificate, Device, Policy, Key, Token)
// with its snake_case fields, exactly as encoding/json marshals it. The
// encoding is canonical: one entry, one byte string. Decode accepts nothing
// else: no unknown kind or field, no trailing bytes, no other key order,
// spacing, escaping or time zone, at most MaxEntrySize bytes. An
// Enrollment's evidence field is the attest.Evidence bundle byte for byte
// (json.Marshal output passes through unchanged), so its SHA-256 is the
// entry's evidence_digest. Tokens are recorded by jti, never the token.
//
// The leaf hash of an entry (LeafHash) is SHA-256(0x00 || encoded entry);
// interior nodes are SHA-256(0x01 || left || right), as RFC 6962 says.
//
// # Checkpoints
//
// A checkpoint is C2SP tlog-checkpoint text, wrapped in a C2SP signed note:
//
//	sigil.test/sigil-audit
//	4
//	paWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaU=
//	time 2025-06-01T12:00:00.123Z
//
//	— sigil.test/sigil-audit Da3asDBFAiACldlYXJw9sOH+ToHwDaxR5onL6pdBj6hiZYD33RFEDAIhAKcM+0rHmalmdTRQ0uEOfMRFqCHExF262o0hVMrXBkmf
//
// The lines are the origin, the tree size in decimal, the base64 root hash
// and one extension line, "time " and the signing time in RFC 3339 UTC.
// The origin is also the key name. The signature line carries the 4-byte
// key ID, SHA-256(name || "\n" || 0x02 || SubjectPublicKeyInfo DER)[:4],
// then the ASN.1 DER ECDSA P-256 signature of SHA-256 of the text (the
// lines above the blank line, each with its newline). See Signer for how
// this key ID differs from Rekor's. OpenCheckpoint verifies one; other
// signatures on the note (witness cosignatures) are ignored.
//
// # The Log
//
// New, then Run: every interval and on Nudge (at most every NudgeGap),
// Run reads the entries stored since the last checkpoint, checks their
// stored leaf hashes, extends an in-memory compact range and signs and
// stores one checkpoint for the batch. At start (Init) it rebuilds the
// range and refuses storage that does not match its own latest checkpoint
// (ErrTampered). An HSM or storage failure is logged, counted and retried
// at the next tick.
//
// Proofs: a Storage that is also a NodeHashReader stores the hash of every
// complete subtree of 2^8, 2^16… entries, and RootHash, InclusionProof and
// ConsistencyProof read O(log size) hashes from it instead of every leaf.
// These nodes are a cache, not evidence: Init and Integrate check each one
// against the leaf hashes they read (ErrTampered), and Verify never reads
// them.
//
// # Origin
//
// A log's default origin is Origin(trust domain, key):
// "HOST/sigil-audit/ID", ID the first 8 bytes in hex of SHA-256 of the
// audit key's SubjectPublicKeyInfo (LogID), so that each log (each dev
// stack, each shard) has its own name, as C2SP expects, without storing
// one; an auditor holding the key derives it. internal/daemon's
// AuditOrigin picks it (or the configured one, or the LegacyOrigin a log
// already uses).
//
// # Tiles
//
// The log is also served as C2SP tlog-tiles (tlog.go): Tile addresses a
// hash tile or entry bundle by its path (ParseTilePath, Tile.Path);
// HashTile reads a tile's hashes, from the stored nodes above level 0;
// EncodeBundle and ParseBundle are the entry bundle format (entries
// prefixed with a big-endian uint16 length, so at most
// MaxBundleEntrySize bytes each). Log.Tile and Log.EntryBundle serve
// only what the latest checkpoint covers (ErrTileNotFound).
//
// # Export directory
//
// WriteExport writes, and DirSource reads:
//
//	DIR/checkpoint                the latest signed checkpoint note
//	DIR/checkpoints/<size>        signed checkpoint notes by decimal tree size
//	                              (the latest, and every stored one the storage lists)
//	DIR/entries/<first>.jsonl     entries first .. first+999, one encoded entry
//	                              per line, each line ending in "\n"; every
//	                              file but the last holds exactly BundleSize
//
// # Auditing
//
// Verify reads a Source (a server, a DirSource), verifies the checkpoint
// signature and origin, hashes every entry up to the checkpoint's root,
// checks every other signed checkpoint it sees is a prefix, decodes every
// entry and hands it to an OnEntry hook, and proves the checkpoint in its
// state file consistent with the new one before replacing it. The state
// file (state.go, JSON) holds the checkpoint's note, the compact range of
// its tree (the hashes along its right edge) and OnEntry's Context: with
// it the next run is incremental, reading only the entries added since
// and extending the range to the new root, O(new entries); a failed
// incremental run re-runs in full to report what a full run reports. Failures are
// typed: RollbackError, ForkError, MismatchError, EntryError, and the
// sentinels ErrCheckpointSignature, ErrOriginMismatch,
// ErrMalformedCheckpoint, ErrState (with ErrKeyChanged when the state is of
// the same origin under another key).
package audit
