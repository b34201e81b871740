-- The database's epoch, the identity of its lineage (store.LineageReader):
-- created here with the database and replaced only by NewEpoch when an
-- operator acknowledges a restore. gen_random_uuid is built in (13+).

CREATE TABLE lineage (
    id    INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    epoch TEXT    NOT NULL CHECK (length(epoch) = 32)
);

INSERT INTO lineage (id, epoch) VALUES (1, replace(gen_random_uuid()::text, '-', ''));

CREATE TRIGGER lineage_no_delete BEFORE DELETE ON lineage
FOR EACH ROW EXECUTE FUNCTION sigil_refuse('the lineage row is never deleted');
