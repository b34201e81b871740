-- The policy set the fleet was last re-evaluated under: one row, replaced
-- only by an application of a larger seq (PutAppliedPolicy's fence), so
-- that of the replicas loading a new set one re-evaluates the fleet.

CREATE TABLE applied_policy (
    id         INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    seq        BIGINT  NOT NULL,
    version    TEXT    NOT NULL CHECK (version <> ''),
    applied_at BIGINT  NOT NULL
);
