-- Witness cosignatures of the audit log's checkpoints (C2SP
-- tlog-cosignature signature lines), one per witness key and checkpoint,
-- append-only: the cosigned checkpoint is the stored note followed by
-- these lines, so checkpoint notes themselves never change.

CREATE TABLE audit_cosignatures (
    size    BIGINT NOT NULL REFERENCES audit_checkpoints (size),
    witness TEXT   NOT NULL CHECK (witness <> ''), -- the witness key, "name+keyid"
    line    BYTEA  NOT NULL CHECK (length(line) > 0),
    PRIMARY KEY (size, witness)
);

CREATE TRIGGER audit_cosignatures_no_update BEFORE UPDATE OR DELETE ON audit_cosignatures
FOR EACH ROW EXECUTE FUNCTION sigil_refuse('audit cosignatures are append-only');
