-- Signing keys of the token service: when each key id was first seen, the
-- one fact every replica must agree on to compute the same rotation
-- schedule (publish, then sign after the lead time, withdraw after the
-- longest token lifetime). Portable to PostgreSQL as is (BIGINT times).

CREATE TABLE signing_keys (
    kid        TEXT   NOT NULL PRIMARY KEY CHECK (kid <> ''),
    first_seen BIGINT NOT NULL
);
