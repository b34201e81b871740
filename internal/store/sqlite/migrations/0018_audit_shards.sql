-- The audit log sharded by time (audit.shard_period): one dense global
-- entry sequence, cut into shards, each a log of its own (its own origin,
-- Merkle tree and checkpoints) over the global indices [start, next
-- shard's start). audit_head.shard_start is the current shard's start,
-- read by AppendAudit in the statement that takes the index (no extra
-- statement per entry); a rotation moves it to the log's size in the
-- transaction that inserts the shard's row, under the head's lock, so
-- nothing lands in the old shard afterwards.
--
-- A shard's checkpoints are stored in audit_checkpoints under their global
-- end (start + size): shards never overlap and are never empty (a shard's
-- first entry is its audit.ShardStarted link), so the key stays unique and
-- grows across shards.

ALTER TABLE audit_head ADD COLUMN shard_start BIGINT NOT NULL DEFAULT 0 CHECK (shard_start >= 0);

DROP TRIGGER audit_head_grows;
CREATE TRIGGER audit_head_grows BEFORE UPDATE ON audit_head
WHEN NOT ((NEW.size = OLD.size + 1 AND NEW.shard_start = OLD.shard_start)
       OR (NEW.size = OLD.size AND NEW.shard_start = OLD.size))
BEGIN SELECT RAISE(ABORT, 'the audit log grows one entry at a time; a shard starts at the head'); END;

CREATE TABLE audit_shards (
    start      BIGINT  NOT NULL PRIMARY KEY CHECK (start >= 0), -- global index of its first entry
    name       TEXT    NOT NULL UNIQUE CHECK (name <> ''),
    origin     TEXT    NOT NULL UNIQUE CHECK (origin <> ''),
    created_at INTEGER NOT NULL
);

-- A shard starts where the head's shard_start was just moved to.
CREATE TRIGGER audit_shards_at_head BEFORE INSERT ON audit_shards
WHEN NEW.start <> (SELECT shard_start FROM audit_head WHERE id = 1)
  OR NEW.start <> (SELECT size FROM audit_head WHERE id = 1)
BEGIN SELECT RAISE(ABORT, 'an audit shard starts at the head'); END;

CREATE TRIGGER audit_shards_no_update BEFORE UPDATE ON audit_shards
BEGIN SELECT RAISE(ABORT, 'audit shards are append-only'); END;

CREATE TRIGGER audit_shards_no_delete BEFORE DELETE ON audit_shards
BEGIN SELECT RAISE(ABORT, 'audit shards are append-only'); END;

-- The interior nodes of the shards that do not start at 0 (those that do
-- use audit_nodes): the same nodes as audit_nodes, of the shard's own
-- tree, at shard-local indices.
CREATE TABLE audit_shard_nodes (
    shard BIGINT  NOT NULL REFERENCES audit_shards (start),
    level INTEGER NOT NULL CHECK (level > 0 AND level < 64 AND level % 8 = 0),
    idx   BIGINT  NOT NULL CHECK (idx >= 0),
    hash  BLOB    NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (shard, level, idx)
);

CREATE TRIGGER audit_shard_nodes_no_update BEFORE UPDATE ON audit_shard_nodes
BEGIN SELECT RAISE(ABORT, 'audit nodes are append-only'); END;

CREATE TRIGGER audit_shard_nodes_no_delete BEFORE DELETE ON audit_shard_nodes
BEGIN SELECT RAISE(ABORT, 'audit nodes are append-only'); END;

-- Archived shards (sigild audit archive --drop): a sealed shard whose
-- export an operator keeps elsewhere, its entries, keys and nodes deleted
-- from the database; its row in audit_shards and its checkpoints stay, so
-- the chain and the next shard's link still name it. Only a sealed shard
-- is archived, and the append-only triggers let a delete through only
-- inside an archived shard's range.
CREATE TABLE audit_archived (
    start       BIGINT  NOT NULL PRIMARY KEY CHECK (start >= 0),
    end_idx     BIGINT  NOT NULL CHECK (end_idx > start),
    archived_at INTEGER NOT NULL
);

CREATE TRIGGER audit_archived_sealed BEFORE INSERT ON audit_archived
WHEN NOT EXISTS (SELECT 1 FROM audit_shards WHERE start = NEW.end_idx)
  OR NOT (NEW.start = 0 OR EXISTS (SELECT 1 FROM audit_shards WHERE start = NEW.start))
  OR EXISTS (SELECT 1 FROM audit_shards WHERE start > NEW.start AND start < NEW.end_idx)
BEGIN SELECT RAISE(ABORT, 'only a sealed audit shard is archived'); END;

CREATE TRIGGER audit_archived_no_update BEFORE UPDATE ON audit_archived
BEGIN SELECT RAISE(ABORT, 'archived audit shards stay archived'); END;

CREATE TRIGGER audit_archived_no_delete BEFORE DELETE ON audit_archived
BEGIN SELECT RAISE(ABORT, 'archived audit shards stay archived'); END;

DROP TRIGGER audit_entries_no_delete;
CREATE TRIGGER audit_entries_no_delete BEFORE DELETE ON audit_entries
WHEN NOT EXISTS (SELECT 1 FROM audit_archived WHERE OLD.idx >= start AND OLD.idx < end_idx)
BEGIN SELECT RAISE(ABORT, 'audit entries are append-only'); END;

DROP TRIGGER audit_keys_no_delete;
CREATE TRIGGER audit_keys_no_delete BEFORE DELETE ON audit_keys
WHEN NOT EXISTS (SELECT 1 FROM audit_archived WHERE OLD.idx >= start AND OLD.idx < end_idx)
BEGIN SELECT RAISE(ABORT, 'audit keys are append-only'); END;

-- audit_nodes are the tree of the shard at 0.
DROP TRIGGER audit_nodes_no_delete;
CREATE TRIGGER audit_nodes_no_delete BEFORE DELETE ON audit_nodes
WHEN NOT EXISTS (SELECT 1 FROM audit_archived WHERE start = 0 AND ((OLD.idx + 1) << OLD.level) <= end_idx)
BEGIN SELECT RAISE(ABORT, 'audit nodes are append-only'); END;

DROP TRIGGER audit_shard_nodes_no_delete;
CREATE TRIGGER audit_shard_nodes_no_delete BEFORE DELETE ON audit_shard_nodes
WHEN NOT EXISTS (SELECT 1 FROM audit_archived WHERE start = OLD.shard)
BEGIN SELECT RAISE(ABORT, 'audit nodes are append-only'); END;
