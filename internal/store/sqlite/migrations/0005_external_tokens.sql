-- External subject tokens (a user IdP's) become nodes of the exchange tree,
-- of kind 'external', so that revoking one revokes every token exchanged
-- from it and refuses it as a subject token from then on. Such a node is
-- named "ext:" + base64url(SHA-256 of what its issuer signed), never holds
-- the token, and is a root: no parent, no client, no cnf, no kid. Only
-- external nodes have jtis that start with "ext:", so none is taken for one
-- of ours.
--
-- SQLite cannot change a table's CHECK constraints, so tokens is rebuilt
-- (on PostgreSQL: ALTER TABLE tokens DROP CONSTRAINT …, ADD CONSTRAINT …).
-- Migrations run in a transaction with foreign keys on, which cannot be
-- turned off there: dropping tokens would delete the revocation events
-- with it (ON DELETE CASCADE), so they and the tokens are set aside first,
-- and both tables made again as 0003 made them, but for the constraints on
-- kind.

CREATE TEMP TABLE token_revocations_0005 AS SELECT seq, jti, revoked_at, reason FROM token_revocations;
CREATE TEMP TABLE tokens_0005 AS SELECT jti, parent_jti, sub, client_id, act, aud, scope, issued_at,
    expires_at, cnf, kind, handle_hash, kid, revoked_at, revocation_reason FROM tokens;
DROP TABLE token_revocations;
DROP TABLE tokens;

CREATE TABLE tokens (
    jti               TEXT    NOT NULL PRIMARY KEY CHECK (jti <> ''),
    -- The token this one was exchanged from, an external node if the
    -- subject token was an external issuer's; NULL for a root token (client
    -- credentials, or an external node). Lifetimes only narrow (InsertToken
    -- checks it), so purging the expired tokens takes whole subtrees and
    -- never trips this key.
    parent_jti        TEXT    REFERENCES tokens (jti),
    sub               TEXT    NOT NULL,
    client_id         TEXT    NOT NULL,                 -- the caller's SPIFFE ID
    act               TEXT    NOT NULL DEFAULT '[]',    -- JSON array, outermost actor first
    aud               TEXT    NOT NULL DEFAULT '[]',    -- JSON array
    scope             TEXT    NOT NULL,
    issued_at         BIGINT  NOT NULL,
    expires_at        BIGINT  NOT NULL,
    cnf               TEXT    NOT NULL,                 -- x5t#S256 of the holder's certificate
    kind              TEXT    NOT NULL CHECK (kind IN ('jwt', 'opaque', 'txn', 'external')),
    handle_hash       BLOB    CHECK (handle_hash IS NULL OR length(handle_hash) = 32), -- SHA-256 of an opaque handle
    kid               TEXT    NOT NULL,
    revoked_at        BIGINT,
    revocation_reason TEXT    NOT NULL DEFAULT '',
    CHECK (parent_jti IS NULL OR parent_jti <> jti),
    CHECK (expires_at > issued_at),
    CHECK ((kind = 'opaque') = (handle_hash IS NOT NULL)),
    CHECK (revoked_at IS NOT NULL OR revocation_reason = ''),
    CHECK ((kind = 'external') = (substr(jti, 1, 4) = 'ext:')),
    CHECK (kind <> 'external' OR (parent_jti IS NULL AND client_id = '' AND cnf = '' AND kid = ''))
);

INSERT INTO tokens SELECT * FROM tokens_0005 ORDER BY issued_at;

CREATE INDEX tokens_parent_jti ON tokens (parent_jti);
CREATE INDEX tokens_expires_at ON tokens (expires_at);
CREATE UNIQUE INDEX tokens_handle_hash ON tokens (handle_hash) WHERE handle_hash IS NOT NULL;

CREATE TRIGGER tokens_immutable
BEFORE UPDATE OF jti, parent_jti, sub, client_id, act, aud, scope, issued_at, expires_at,
    cnf, kind, handle_hash, kid ON tokens
BEGIN SELECT RAISE(ABORT, 'tokens are immutable but for their revocation'); END;

CREATE TABLE token_revocations (
    seq        INTEGER NOT NULL PRIMARY KEY CHECK (seq > 0),   -- 1-based, dense as assigned
    jti        TEXT    NOT NULL UNIQUE REFERENCES tokens (jti) ON DELETE CASCADE,
    revoked_at BIGINT  NOT NULL,
    reason     TEXT    NOT NULL
);

INSERT INTO token_revocations SELECT * FROM token_revocations_0005 ORDER BY seq;

CREATE TRIGGER token_revocations_no_update BEFORE UPDATE ON token_revocations
BEGIN SELECT RAISE(ABORT, 'token revocation events are append-only'); END;

DROP TABLE token_revocations_0005;
DROP TABLE tokens_0005;
