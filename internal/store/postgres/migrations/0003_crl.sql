-- The CRL replicas serve: one row, replaced only by a CRL of a larger
-- number (PutCRL's fence, an upsert whose WHERE the row lock re-checks),
-- so that one replica produces each and the others serve it.

CREATE TABLE crl (
    id             INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    number         BIGINT  NOT NULL,
    revocation_seq BIGINT  NOT NULL,
    produced_at    BIGINT  NOT NULL,
    der            BYTEA   NOT NULL CHECK (length(der) > 0)
);
