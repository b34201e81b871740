-- audit_keys as a WITHOUT ROWID table: one B-tree ordered by key instead of
-- a rowid table and the index of its primary key, so that appending an
-- entry with a key (every token exchange does) inserts into one B-tree and
-- dirties one page fewer, and AuditIndex reads one. Same columns,
-- constraints and triggers as 0002_audit and 0018_audit_shards (keys
-- of an archived shard may be deleted). Portable to PostgreSQL but for
-- WITHOUT ROWID (drop it) and the triggers (trigger functions there).

CREATE TABLE audit_keys_new (
    key TEXT    NOT NULL PRIMARY KEY CHECK (key <> ''), -- "serial:ab12", "jti:…"
    idx INTEGER NOT NULL REFERENCES audit_entries (idx)
) WITHOUT ROWID;

INSERT INTO audit_keys_new (key, idx) SELECT key, idx FROM audit_keys;

DROP TABLE audit_keys;

ALTER TABLE audit_keys_new RENAME TO audit_keys;

CREATE TRIGGER audit_keys_no_update BEFORE UPDATE ON audit_keys
BEGIN SELECT RAISE(ABORT, 'audit keys are append-only'); END;

CREATE TRIGGER audit_keys_no_delete BEFORE DELETE ON audit_keys
WHEN NOT EXISTS (SELECT 1 FROM audit_archived WHERE OLD.idx >= start AND OLD.idx < end_idx)
BEGIN SELECT RAISE(ABORT, 'audit keys are append-only'); END;
