-- The audit log sharded by time: SQLite's migration 0018 (see it for the
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

-- Archived shards: see SQLite's migration 0018.
CREATE TABLE audit_archived (
    start       BIGINT NOT NULL PRIMARY KEY CHECK (start >= 0),
    end_idx     BIGINT NOT NULL CHECK (end_idx > start),
    archived_at BIGINT NOT NULL
);

CREATE FUNCTION audit_archived_sealed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM audit_shards WHERE start = NEW.end_idx)
       OR NOT (NEW.start = 0 OR EXISTS (SELECT 1 FROM audit_shards WHERE start = NEW.start))
       OR EXISTS (SELECT 1 FROM audit_shards WHERE start > NEW.start AND start < NEW.end_idx) THEN
        RAISE EXCEPTION 'only a sealed audit shard is archived';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER audit_archived_sealed BEFORE INSERT ON audit_archived
FOR EACH ROW EXECUTE FUNCTION audit_archived_sealed();
CREATE TRIGGER audit_archived_no_update BEFORE UPDATE OR DELETE ON audit_archived
FOR EACH ROW EXECUTE FUNCTION sigil_refuse('archived audit shards stay archived');

-- A delete only inside an archived shard's range; updates never.
CREATE FUNCTION audit_delete_archived() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    ok boolean;
BEGIN
    IF TG_TABLE_NAME = 'audit_nodes' THEN
        ok := EXISTS (SELECT 1 FROM audit_archived WHERE start = 0 AND ((OLD.idx + 1) << OLD.level) <= end_idx);
    ELSIF TG_TABLE_NAME = 'audit_shard_nodes' THEN
        ok := EXISTS (SELECT 1 FROM audit_archived WHERE start = OLD.shard);
    ELSE
        ok := EXISTS (SELECT 1 FROM audit_archived WHERE OLD.idx >= start AND OLD.idx < end_idx);
    END IF;
    IF NOT ok THEN
        RAISE EXCEPTION '%', TG_ARGV[0];
    END IF;
    RETURN OLD;
END $$;

DROP TRIGGER audit_entries_no_update ON audit_entries;
CREATE TRIGGER audit_entries_no_update BEFORE UPDATE ON audit_entries
FOR EACH ROW EXECUTE FUNCTION sigil_refuse('audit entries are append-only');
CREATE TRIGGER audit_entries_no_delete BEFORE DELETE ON audit_entries
FOR EACH ROW EXECUTE FUNCTION audit_delete_archived('audit entries are append-only');

DROP TRIGGER audit_keys_no_update ON audit_keys;
CREATE TRIGGER audit_keys_no_update BEFORE UPDATE ON audit_keys
FOR EACH ROW EXECUTE FUNCTION sigil_refuse('audit keys are append-only');
CREATE TRIGGER audit_keys_no_delete BEFORE DELETE ON audit_keys
FOR EACH ROW EXECUTE FUNCTION audit_delete_archived('audit keys are append-only');

DROP TRIGGER audit_nodes_no_update ON audit_nodes;
CREATE TRIGGER audit_nodes_no_update BEFORE UPDATE ON audit_nodes
FOR EACH ROW EXECUTE FUNCTION sigil_refuse('audit nodes are append-only');
CREATE TRIGGER audit_nodes_no_delete BEFORE DELETE ON audit_nodes
FOR EACH ROW EXECUTE FUNCTION audit_delete_archived('audit nodes are append-only');

DROP TRIGGER audit_shard_nodes_no_update ON audit_shard_nodes;
CREATE TRIGGER audit_shard_nodes_no_update BEFORE UPDATE ON audit_shard_nodes
FOR EACH ROW EXECUTE FUNCTION sigil_refuse('audit nodes are append-only');
CREATE TRIGGER audit_shard_nodes_no_delete BEFORE DELETE ON audit_shard_nodes
FOR EACH ROW EXECUTE FUNCTION audit_delete_archived('audit nodes are append-only');
