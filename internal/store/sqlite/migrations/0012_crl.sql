-- The CRL replicas serve: one row, replaced only by a CRL of a larger
-- number (PutCRL's fence), so that one replica produces each and the
-- others serve it. Portable to PostgreSQL as is (BIGINT times).

CREATE TABLE crl (
    id             INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    number         BIGINT  NOT NULL,
    revocation_seq BIGINT  NOT NULL,
    produced_at    BIGINT  NOT NULL,
    der            BLOB    NOT NULL CHECK (length(der) > 0)
);
