-- The audit log's size in a coordinator row, from which AppendAudit takes
-- each new entry's index (UPDATE audit_head SET size = size + 1 …
-- RETURNING size) in the appending transaction. Its row lock orders
-- appenders on any database, so indices are dense, gap-free and in commit
-- order with several writers; max(idx) + 1, as before, would give two
-- writers the same index on PostgreSQL, and a sequence would commit out of
-- order and leave gaps. Portable to PostgreSQL but for the triggers
-- (trigger functions there).

CREATE TABLE audit_head (
    id   INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    size BIGINT  NOT NULL CHECK (size >= 0) -- entries in the log; the next index
);

INSERT INTO audit_head (id, size) SELECT 1, count(*) FROM audit_entries;

-- The log only grows, one entry at a time, and only with its entry (the
-- insert of entry size - 1 follows in the same transaction and is checked
-- by audit_entries_dense).
CREATE TRIGGER audit_head_grows BEFORE UPDATE ON audit_head
WHEN NEW.size <> OLD.size + 1
BEGIN SELECT RAISE(ABORT, 'the audit log grows one entry at a time'); END;

CREATE TRIGGER audit_head_no_delete BEFORE DELETE ON audit_head
BEGIN SELECT RAISE(ABORT, 'the audit head is never deleted'); END;

-- An entry's index is the one AppendAudit took from the head.
CREATE TRIGGER audit_entries_at_head BEFORE INSERT ON audit_entries
WHEN NEW.idx <> (SELECT size - 1 FROM audit_head WHERE id = 1)
BEGIN SELECT RAISE(ABORT, 'audit entries are appended at the head: idx must be size - 1'); END;
