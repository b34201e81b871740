-- Enrollment: devices, challenges, evidence, certificates.
--
-- Portable to PostgreSQL except for types: BLOB is BYTEA there. Times are
-- BIGINT microseconds since the Unix epoch (UTC) in both, so the Go side
-- needs no per-database time handling. length() on BLOB/BYTEA, partial
-- indexes, CHECK and ON CONFLICT / RETURNING in the queries exist in both.

CREATE TABLE devices (
    ek_hash       TEXT    NOT NULL PRIMARY KEY,
    ek_cert_der   BLOB,
    ek_public_der BLOB    NOT NULL CHECK (length(ek_public_der) > 0),
    ak_hash       TEXT    NOT NULL UNIQUE,
    ak_public     BLOB    NOT NULL CHECK (length(ak_public) > 0),
    status        TEXT    NOT NULL CHECK (status IN ('active', 'disabled')),
    created_at    BIGINT  NOT NULL,
    updated_at    BIGINT  NOT NULL,
    CHECK (ek_hash <> '' AND ak_hash <> '')
);

-- No foreign key to devices: an enrollment challenge precedes its device.
CREATE TABLE challenges (
    id          TEXT    NOT NULL PRIMARY KEY CHECK (id <> ''),
    ek_hash     TEXT    NOT NULL,
    ak_hash     TEXT    NOT NULL,
    nonce       BLOB    NOT NULL CHECK (length(nonce) > 0),
    secret_hash BLOB    NOT NULL CHECK (length(secret_hash) = 32),
    spiffe_id   TEXT    NOT NULL,
    kind        TEXT    NOT NULL CHECK (kind IN ('enroll', 'renew')),
    pending     BLOB,
    created_at  BIGINT  NOT NULL,
    expires_at  BIGINT  NOT NULL,
    consumed_at BIGINT,
    CHECK (expires_at > created_at)
);

CREATE INDEX challenges_expires_at ON challenges (expires_at);

-- No foreign key to devices: evidence of a refused enrollment is kept too.
CREATE TABLE evidence (
    digest     TEXT    NOT NULL PRIMARY KEY CHECK (digest <> ''),
    ek_hash    TEXT    NOT NULL,
    kind       TEXT    NOT NULL,
    bundle     BLOB    NOT NULL,
    created_at BIGINT  NOT NULL
);

CREATE TABLE certificates (
    serial            TEXT    NOT NULL PRIMARY KEY CHECK (serial <> ''),
    spiffe_id         TEXT    NOT NULL,
    ek_hash           TEXT    NOT NULL REFERENCES devices (ek_hash),
    not_before        BIGINT  NOT NULL,
    not_after         BIGINT  NOT NULL,
    evidence_digest   TEXT    NOT NULL REFERENCES evidence (digest),
    policy_version    TEXT    NOT NULL,
    der               BLOB    NOT NULL CHECK (length(der) > 0),
    revoked_at        BIGINT,
    revocation_reason TEXT    NOT NULL DEFAULT '',
    CHECK (not_after > not_before),
    CHECK (revoked_at IS NOT NULL OR revocation_reason = '')
);

CREATE INDEX certificates_ek_hash ON certificates (ek_hash, not_before);
CREATE INDEX certificates_revoked ON certificates (not_after) WHERE revoked_at IS NOT NULL;
