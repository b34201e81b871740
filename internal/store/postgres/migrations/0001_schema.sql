-- The store's schema on PostgreSQL: the SQLite backend's migrations 0001 to
-- 0007 in one, with PostgreSQL's types (BYTEA, BIGINT) and trigger
-- functions. Times are BIGINT microseconds since the Unix epoch (UTC), as
-- in SQLite, so that both backends store what the contract says.

CREATE TABLE devices (
    ek_hash       TEXT   NOT NULL PRIMARY KEY,
    ek_cert_der   BYTEA,
    ek_public_der BYTEA  NOT NULL CHECK (length(ek_public_der) > 0),
    ak_hash       TEXT   NOT NULL UNIQUE,
    ak_public     BYTEA  NOT NULL CHECK (length(ak_public) > 0),
    status        TEXT   NOT NULL CHECK (status IN ('active', 'disabled')),
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    CHECK (ek_hash <> '' AND ak_hash <> '')
);

-- No foreign key to devices: an enrollment challenge precedes its device.
CREATE TABLE challenges (
    id          TEXT   NOT NULL PRIMARY KEY CHECK (id <> ''),
    ek_hash     TEXT   NOT NULL,
    ak_hash     TEXT   NOT NULL,
    nonce       BYTEA  NOT NULL CHECK (length(nonce) > 0),
    secret_hash BYTEA  NOT NULL CHECK (length(secret_hash) = 32),
    spiffe_id   TEXT   NOT NULL,
    kind        TEXT   NOT NULL CHECK (kind IN ('enroll', 'renew')),
    pending     BYTEA,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    consumed_at BIGINT,
    CHECK (expires_at > created_at)
);

CREATE INDEX challenges_expires_at ON challenges (expires_at);

-- No foreign key to devices: evidence of a refused enrollment is kept too.
CREATE TABLE evidence (
    digest     TEXT   NOT NULL PRIMARY KEY CHECK (digest <> ''),
    ek_hash    TEXT   NOT NULL,
    kind       TEXT   NOT NULL,
    bundle     BYTEA  NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE certificates (
    serial            TEXT   NOT NULL PRIMARY KEY CHECK (serial <> ''),
    spiffe_id         TEXT   NOT NULL,
    ek_hash           TEXT   NOT NULL REFERENCES devices (ek_hash),
    not_before        BIGINT NOT NULL,
    not_after         BIGINT NOT NULL,
    evidence_digest   TEXT   NOT NULL REFERENCES evidence (digest),
    policy_version    TEXT   NOT NULL,
    der               BYTEA  NOT NULL CHECK (length(der) > 0),
    revoked_at        BIGINT,
    revocation_reason TEXT   NOT NULL DEFAULT '',
    thumbprint        TEXT   NOT NULL DEFAULT '', -- RFC 8705 x5t#S256 of der: the cnf of the tokens bound to it
    CHECK (not_after > not_before),
    CHECK (revoked_at IS NOT NULL OR revocation_reason = '')
);

CREATE INDEX certificates_ek_hash ON certificates (ek_hash, not_before);
CREATE INDEX certificates_revoked ON certificates (not_after) WHERE revoked_at IS NOT NULL;
CREATE INDEX certificates_thumbprint ON certificates (thumbprint) WHERE thumbprint <> '';
CREATE INDEX certificates_holders ON certificates (spiffe_id, not_after) WHERE revoked_at IS NULL;

-- Audit log. Indices come from the coordinator row audit_head, updated in
-- the appending transaction (its row lock orders appenders across
-- replicas: dense, gap-free, in commit order); never from a sequence.
CREATE TABLE audit_entries (
    idx        BIGINT NOT NULL PRIMARY KEY CHECK (idx >= 0),
    data       BYTEA  NOT NULL,
    leaf_hash  BYTEA  NOT NULL CHECK (length(leaf_hash) = 32),
    created_at BIGINT NOT NULL
);

CREATE TABLE audit_keys (
    key TEXT   NOT NULL PRIMARY KEY CHECK (key <> ''),
    idx BIGINT NOT NULL REFERENCES audit_entries (idx)
);

CREATE TABLE audit_checkpoints (
    size       BIGINT NOT NULL PRIMARY KEY CHECK (size >= 0),
    note       BYTEA  NOT NULL CHECK (length(note) > 0),
    created_at BIGINT NOT NULL
);

CREATE TABLE audit_nodes (
    level INTEGER NOT NULL CHECK (level > 0 AND level < 64 AND level % 8 = 0),
    idx   BIGINT  NOT NULL CHECK (idx >= 0),
    hash  BYTEA   NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (level, idx)
);

CREATE TABLE audit_head (
    id   INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    size BIGINT  NOT NULL CHECK (size >= 0) -- entries in the log; the next index
);

INSERT INTO audit_head (id, size) VALUES (1, 0);

-- Guards against bugs (tampering is what the Merkle tree catches): the log
-- is append-only, dense, grows one entry at a time at the head, and its
-- checkpoints only grow.
CREATE FUNCTION sigil_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION '%', TG_ARGV[0]; END $$;

CREATE TRIGGER audit_entries_no_update BEFORE UPDATE OR DELETE ON audit_entries
FOR EACH ROW EXECUTE FUNCTION sigil_refuse('audit entries are append-only');
CREATE TRIGGER audit_keys_no_update BEFORE UPDATE OR DELETE ON audit_keys
FOR EACH ROW EXECUTE FUNCTION sigil_refuse('audit keys are append-only');
CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE OR DELETE ON audit_checkpoints
FOR EACH ROW EXECUTE FUNCTION sigil_refuse('audit checkpoints are append-only');
CREATE TRIGGER audit_nodes_no_update BEFORE UPDATE OR DELETE ON audit_nodes
FOR EACH ROW EXECUTE FUNCTION sigil_refuse('audit nodes are append-only');
CREATE TRIGGER audit_head_no_delete BEFORE DELETE ON audit_head
FOR EACH ROW EXECUTE FUNCTION sigil_refuse('the audit head is never deleted');
CREATE TRIGGER audit_head_grows BEFORE UPDATE ON audit_head
FOR EACH ROW WHEN (NEW.size <> OLD.size + 1)
EXECUTE FUNCTION sigil_refuse('the audit log grows one entry at a time');

CREATE FUNCTION audit_entries_at_head() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.idx <> (SELECT size - 1 FROM audit_head WHERE id = 1) THEN
        RAISE EXCEPTION 'audit entries are appended at the head: idx must be size - 1';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER audit_entries_at_head BEFORE INSERT ON audit_entries
FOR EACH ROW EXECUTE FUNCTION audit_entries_at_head();

CREATE FUNCTION audit_checkpoints_grow() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.size <= (SELECT max(size) FROM audit_checkpoints) THEN
        RAISE EXCEPTION 'audit checkpoints only grow: size % is not above the latest', NEW.size;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER audit_checkpoints_grow BEFORE INSERT ON audit_checkpoints
FOR EACH ROW EXECUTE FUNCTION audit_checkpoints_grow();

-- Tokens: every access token issued (never the token itself), the tree of
-- token exchanges (parent_jti), revocations, and the revocation feed.
CREATE TABLE tokens (
    jti               TEXT   NOT NULL PRIMARY KEY CHECK (jti <> ''),
    parent_jti        TEXT   REFERENCES tokens (jti),
    sub               TEXT   NOT NULL,
    client_id         TEXT   NOT NULL,
    act               TEXT   NOT NULL DEFAULT '[]',
    aud               TEXT   NOT NULL DEFAULT '[]',
    scope             TEXT   NOT NULL,
    issued_at         BIGINT NOT NULL,
    expires_at        BIGINT NOT NULL,
    cnf               TEXT   NOT NULL,
    kind              TEXT   NOT NULL CHECK (kind IN ('jwt', 'opaque', 'txn', 'external')),
    handle_hash       BYTEA  CHECK (handle_hash IS NULL OR length(handle_hash) = 32),
    kid               TEXT   NOT NULL,
    revoked_at        BIGINT,
    revocation_reason TEXT   NOT NULL DEFAULT '',
    CHECK (parent_jti IS NULL OR parent_jti <> jti),
    CHECK (expires_at > issued_at),
    CHECK ((kind = 'opaque') = (handle_hash IS NOT NULL)),
    CHECK (revoked_at IS NOT NULL OR revocation_reason = ''),
    CHECK ((kind = 'external') = (substr(jti, 1, 4) = 'ext:')),
    CHECK (kind <> 'external' OR (parent_jti IS NULL AND client_id = '' AND cnf = '' AND kid = ''))
);

CREATE INDEX tokens_parent_jti ON tokens (parent_jti);
CREATE INDEX tokens_cnf ON tokens (cnf) WHERE cnf <> '';
CREATE INDEX tokens_expires_at ON tokens (expires_at);
CREATE UNIQUE INDEX tokens_handle_hash ON tokens (handle_hash) WHERE handle_hash IS NOT NULL;

CREATE FUNCTION tokens_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (NEW.jti, NEW.parent_jti, NEW.sub, NEW.client_id, NEW.act, NEW.aud, NEW.scope, NEW.issued_at,
        NEW.expires_at, NEW.cnf, NEW.kind, NEW.handle_hash, NEW.kid)
       IS DISTINCT FROM (OLD.jti, OLD.parent_jti, OLD.sub, OLD.client_id, OLD.act, OLD.aud, OLD.scope,
        OLD.issued_at, OLD.expires_at, OLD.cnf, OLD.kind, OLD.handle_hash, OLD.kid) THEN
        RAISE EXCEPTION 'tokens are immutable but for their revocation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER tokens_immutable BEFORE UPDATE ON tokens
FOR EACH ROW EXECUTE FUNCTION tokens_immutable();

-- One event per revoked token, numbered from the coordinator row
-- token_revocation_seq in the revoking transaction.
CREATE TABLE token_revocations (
    seq        BIGINT NOT NULL PRIMARY KEY CHECK (seq > 0),
    jti        TEXT   NOT NULL UNIQUE REFERENCES tokens (jti) ON DELETE CASCADE,
    revoked_at BIGINT NOT NULL,
    reason     TEXT   NOT NULL
);

CREATE TRIGGER token_revocations_no_update BEFORE UPDATE ON token_revocations
FOR EACH ROW EXECUTE FUNCTION sigil_refuse('token revocation events are append-only');

-- The feed's certificate events; their seq comes from token_revocation_seq
-- too, so token and certificate events are one sequence.
CREATE TABLE certificate_revocations (
    seq        BIGINT NOT NULL PRIMARY KEY CHECK (seq > 0),
    serial     TEXT   NOT NULL UNIQUE REFERENCES certificates (serial),
    revoked_at BIGINT NOT NULL,
    reason     TEXT   NOT NULL
);

CREATE TRIGGER certificate_revocations_no_update BEFORE UPDATE OR DELETE ON certificate_revocations
FOR EACH ROW EXECUTE FUNCTION sigil_refuse('certificate revocation events are append-only');

CREATE TABLE token_revocation_seq (
    id  INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    seq BIGINT  NOT NULL CHECK (seq >= 0)
);

INSERT INTO token_revocation_seq (id, seq) VALUES (1, 0);

CREATE TABLE signing_keys (
    kid        TEXT   NOT NULL PRIMARY KEY CHECK (kid <> ''),
    first_seen BIGINT NOT NULL
);
