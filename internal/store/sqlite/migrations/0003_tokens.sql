-- Tokens: every access token issued (never the token itself), the tree of
-- token exchanges (parent_jti), revocations, and the revocation event feed
-- for resource servers.
--
-- Portable to PostgreSQL except for: BLOB is BYTEA there; the triggers are a
-- trigger function there. act and aud are JSON arrays in TEXT (JSONB would
-- do there too). The partial unique index, ON DELETE CASCADE, WITH RECURSIVE
-- in the queries and UPDATE … RETURNING on the sequence row exist in both.

CREATE TABLE tokens (
    jti               TEXT    NOT NULL PRIMARY KEY CHECK (jti <> ''),
    -- The token this one was exchanged from; NULL for a root token (client
    -- credentials, or a subject token from an external issuer). Lifetimes
    -- only narrow (InsertToken checks it), so purging the expired tokens
    -- takes whole subtrees and never trips this key.
    parent_jti        TEXT    REFERENCES tokens (jti),
    sub               TEXT    NOT NULL,
    client_id         TEXT    NOT NULL,                 -- the caller's SPIFFE ID
    act               TEXT    NOT NULL DEFAULT '[]',    -- JSON array, outermost actor first
    aud               TEXT    NOT NULL DEFAULT '[]',    -- JSON array
    scope             TEXT    NOT NULL,
    issued_at         BIGINT  NOT NULL,
    expires_at        BIGINT  NOT NULL,
    cnf               TEXT    NOT NULL,                 -- x5t#S256 of the holder's certificate
    kind              TEXT    NOT NULL CHECK (kind IN ('jwt', 'opaque', 'txn')),
    handle_hash       BLOB    CHECK (handle_hash IS NULL OR length(handle_hash) = 32), -- SHA-256 of an opaque handle
    kid               TEXT    NOT NULL,
    revoked_at        BIGINT,
    revocation_reason TEXT    NOT NULL DEFAULT '',
    CHECK (parent_jti IS NULL OR parent_jti <> jti),
    CHECK (expires_at > issued_at),
    CHECK ((kind = 'opaque') = (handle_hash IS NOT NULL)),
    CHECK (revoked_at IS NOT NULL OR revocation_reason = '')
);

CREATE INDEX tokens_parent_jti ON tokens (parent_jti);
CREATE INDEX tokens_expires_at ON tokens (expires_at);
CREATE UNIQUE INDEX tokens_handle_hash ON tokens (handle_hash) WHERE handle_hash IS NOT NULL;

-- A token record is what was issued: only its revocation changes. In
-- particular parent_jti and expires_at, on which revocation cascades and
-- purging rely, never do. (This guards against bugs.)
CREATE TRIGGER tokens_immutable
BEFORE UPDATE OF jti, parent_jti, sub, client_id, act, aud, scope, issued_at, expires_at,
    cnf, kind, handle_hash, kid ON tokens
BEGIN SELECT RAISE(ABORT, 'tokens are immutable but for their revocation'); END;

-- One event per revoked token, in the order the revocations committed.
-- seq comes from token_revocation_seq, not max(seq) + 1: purging old events
-- must not make a later seq repeat one a subscriber has seen.
CREATE TABLE token_revocations (
    seq        INTEGER NOT NULL PRIMARY KEY CHECK (seq > 0),   -- 1-based, dense as assigned
    jti        TEXT    NOT NULL UNIQUE REFERENCES tokens (jti) ON DELETE CASCADE,
    revoked_at BIGINT  NOT NULL,
    reason     TEXT    NOT NULL
);

CREATE TRIGGER token_revocations_no_update BEFORE UPDATE ON token_revocations
BEGIN SELECT RAISE(ABORT, 'token revocation events are append-only'); END;

-- The last seq assigned, one row. Updating it in the revoking transaction
-- serialises revocations on PostgreSQL too (a row lock, no LOCK TABLE).
CREATE TABLE token_revocation_seq (
    id  INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    seq BIGINT  NOT NULL CHECK (seq >= 0)
);

INSERT INTO token_revocation_seq (id, seq) VALUES (1, 0);
