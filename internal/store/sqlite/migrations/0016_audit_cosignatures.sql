-- Witness cosignatures of the audit log's checkpoints (C2SP
-- tlog-cosignature signature lines), one per witness key and checkpoint,
-- append-only: the cosigned checkpoint is the stored note followed by
-- these lines, so checkpoint notes themselves never change.

CREATE TABLE audit_cosignatures (
    size    INTEGER NOT NULL REFERENCES audit_checkpoints (size),
    witness TEXT    NOT NULL CHECK (witness <> ''), -- the witness key, "name+keyid"
    line    BLOB    NOT NULL CHECK (length(line) > 0),
    PRIMARY KEY (size, witness)
);

CREATE TRIGGER audit_cosignatures_no_update BEFORE UPDATE ON audit_cosignatures
BEGIN SELECT RAISE(ABORT, 'audit cosignatures are append-only'); END;

CREATE TRIGGER audit_cosignatures_no_delete BEFORE DELETE ON audit_cosignatures
BEGIN SELECT RAISE(ABORT, 'audit cosignatures are append-only'); END;
