-- OpenID Shared Signals streams (internal/ssf): a receiver's subscription
-- to the revocation feed and its delivery position, so that it survives a
-- restart. acked is a JSON array of the sequence numbers acknowledged
-- above cursor. Portable to PostgreSQL as is (BIGINT times, TEXT JSON).

CREATE TABLE ssf_streams (
    id                 TEXT   NOT NULL PRIMARY KEY CHECK (id <> ''),
    receiver           TEXT   NOT NULL CHECK (receiver <> ''),
    config             TEXT   NOT NULL,
    created_at         BIGINT NOT NULL,
    cursor             BIGINT NOT NULL CHECK (cursor >= 0),
    delivered          BIGINT NOT NULL CHECK (delivered >= 0),
    acked              TEXT   NOT NULL,
    verification_id    BIGINT NOT NULL CHECK (verification_id >= 0),
    verification_state TEXT   NOT NULL,
    verification_done  BIGINT NOT NULL CHECK (verification_done >= 0 AND verification_done <= verification_id)
);
