-- The audit log sharded by time: SQLite's migration 0017 (see it for the
-- design), with PostgreSQL's types and trigger functions.

ALTER TABLE audit_head ADD COLUMN shard_start BIGINT NOT NULL DEFAULT 0 CHECK (shard_start >= 0);

DROP TRIGGER audit_head_grows ON audit_head;
CREATE TRIGGER audit_head_grows BEFORE UPDATE ON audit_head
FOR EACH ROW WHEN (NOT ((NEW.size = OLD.size + 1 AND NEW.shard_start = OLD.shard_start)
                     OR (NEW.size = OLD.size AND NEW.shard_start = OLD.size)))
EXECUTE FUNCTION sigil_refuse('the audit log grows one entry at a time; a shard starts at the head');

CREATE TABLE audit_shards (
    start      BIGINT NOT NULL PRIMARY KEY CHECK (start >= 0),
    name       TEXT   NOT NULL UNIQUE CHECK (name <> ''),
    origin     TEXT   NOT NULL UNIQUE CHECK (origin <> ''),
    created_at BIGINT NOT NULL
);

CREATE FUNCTION audit_shards_at_head() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.start <> (SELECT shard_start FROM audit_head WHERE id = 1)
       OR NEW.start <> (SELECT size FROM audit_head WHERE id = 1) THEN
        RAISE EXCEPTION 'an audit shard starts at the head';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER audit_shards_at_head BEFORE INSERT ON audit_shards
FOR EACH ROW EXECUTE FUNCTION audit_shards_at_head();
CREATE TRIGGER audit_shards_no_update BEFORE UPDATE OR DELETE ON audit_shards
FOR EACH ROW EXECUTE FUNCTION sigil_refuse('audit shards are append-only');

CREATE TABLE audit_shard_nodes (
    shard BIGINT  NOT NULL REFERENCES audit_shards (start),
    level INTEGER NOT NULL CHECK (level > 0 AND level < 64 AND level % 8 = 0),
    idx   BIGINT  NOT NULL CHECK (idx >= 0),
    hash  BYTEA   NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (shard, level, idx)
);
CREATE TRIGGER audit_shard_nodes_no_update BEFORE UPDATE OR DELETE ON audit_shard_nodes
FOR EACH ROW EXECUTE FUNCTION sigil_refuse('audit nodes are append-only');
