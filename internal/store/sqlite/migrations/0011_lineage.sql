-- The database's epoch, the identity of its lineage (store.LineageReader):
-- created here with the database, or for a database migrated from before
-- epochs, and replaced only by NewEpoch when an operator acknowledges a
-- restore. Portable to PostgreSQL but for randomblob (gen_random_bytes
-- there).

CREATE TABLE lineage (
    id    INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    epoch TEXT    NOT NULL CHECK (length(epoch) = 32)
);

INSERT INTO lineage (id, epoch) VALUES (1, lower(hex(randomblob(16))));

CREATE TRIGGER lineage_no_delete BEFORE DELETE ON lineage
BEGIN SELECT RAISE(ABORT, 'the lineage row is never deleted'); END;
