-- Interior nodes of the audit log's Merkle tree, so that proofs read
-- O(log n) small ranges instead of every leaf hash (as tiled logs do): the
-- RFC 6962 hash of every complete perfect subtree of 2^level entries whose
-- level is a positive multiple of 8 (AuditTileHeight), node idx covering
-- entries [idx << level, (idx + 1) << level). AppendAudit stores the nodes
-- an entry completes in the entry's own transaction (savepoint); the Go
-- side of this migration computes those of the entries stored before it,
-- in the migration's transaction. So every complete node is stored.
--
-- The nodes are a cache of the leaf hashes, not evidence: the auditor
-- (audit.Verify) recomputes the tree from the entries, and the Log checks
-- the stored nodes against the leaf hashes it reads (audit.Log.Init).
--
-- Portable to PostgreSQL but for BLOB (BYTEA), INTEGER (BIGINT), WITHOUT
-- ROWID (drop it) and the triggers (trigger functions).

CREATE TABLE audit_nodes (
    level INTEGER NOT NULL CHECK (level > 0 AND level < 64 AND level % 8 = 0),
    idx   INTEGER NOT NULL CHECK (idx >= 0),
    hash  BLOB    NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (level, idx)
) WITHOUT ROWID;

CREATE TRIGGER audit_nodes_no_update BEFORE UPDATE ON audit_nodes
BEGIN SELECT RAISE(ABORT, 'audit nodes are append-only'); END;

CREATE TRIGGER audit_nodes_no_delete BEFORE DELETE ON audit_nodes
BEGIN SELECT RAISE(ABORT, 'audit nodes are append-only'); END;
