-- Audit log: the entries of the tamper-evident log, keys to find entries by
-- (a certificate serial, a token jti), and signed checkpoints.
--
-- Portable to PostgreSQL except for: BLOB is BYTEA there; idx and size are
-- BIGINT (INTEGER PRIMARY KEY is spelt so here to make idx SQLite's 64-bit
-- rowid); the triggers below are a trigger function there. AppendAudit
-- assigns idx = max(idx) + 1 in the write transaction, which SQLite runs one
-- at a time; PostgreSQL needs LOCK TABLE audit_entries IN EXCLUSIVE MODE (or
-- an advisory lock) first.

CREATE TABLE audit_entries (
    idx        INTEGER NOT NULL PRIMARY KEY CHECK (idx >= 0), -- 0-based, dense
    data       BLOB    NOT NULL,                              -- the entry as the tree hashes it
    leaf_hash  BLOB    NOT NULL CHECK (length(leaf_hash) = 32), -- RFC 6962 leaf hash of data
    created_at BIGINT  NOT NULL
);

CREATE TABLE audit_keys (
    key TEXT    NOT NULL PRIMARY KEY CHECK (key <> ''), -- "serial:ab12", "jti:…"
    idx INTEGER NOT NULL REFERENCES audit_entries (idx)
);

CREATE TABLE audit_checkpoints (
    size       INTEGER NOT NULL PRIMARY KEY CHECK (size >= 0), -- tree size
    note       BLOB    NOT NULL CHECK (length(note) > 0),      -- signed checkpoint note
    created_at BIGINT  NOT NULL
);

-- The log is append-only and dense whatever writes to it. (This guards
-- against bugs; tampering with the file is what the Merkle tree catches.)

CREATE TRIGGER audit_entries_dense BEFORE INSERT ON audit_entries
WHEN NEW.idx <> (SELECT coalesce(max(idx) + 1, 0) FROM audit_entries)
BEGIN SELECT RAISE(ABORT, 'audit entries are dense: idx must be the log size'); END;

CREATE TRIGGER audit_entries_no_update BEFORE UPDATE ON audit_entries
BEGIN SELECT RAISE(ABORT, 'audit entries are append-only'); END;

CREATE TRIGGER audit_entries_no_delete BEFORE DELETE ON audit_entries
BEGIN SELECT RAISE(ABORT, 'audit entries are append-only'); END;

CREATE TRIGGER audit_keys_no_update BEFORE UPDATE ON audit_keys
BEGIN SELECT RAISE(ABORT, 'audit keys are append-only'); END;

CREATE TRIGGER audit_keys_no_delete BEFORE DELETE ON audit_keys
BEGIN SELECT RAISE(ABORT, 'audit keys are append-only'); END;

CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit checkpoints are append-only'); END;

CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit checkpoints are append-only'); END;
