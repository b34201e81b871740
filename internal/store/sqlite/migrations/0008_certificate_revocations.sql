-- Revoking a certificate revokes the tokens bound to it, and the feed
-- carries certificate revocations as well as token revocations.
--
-- certificates.thumbprint is the RFC 8705 x5t#S256 of der, the cnf of the
-- tokens bound to the certificate; the Go step of this migration computes
-- it for the certificates stored before it, InsertCertificate for the
-- others. tokens_cnf finds a certificate's tokens.
--
-- certificate_revocations holds the feed's certificate events beside the
-- token events of token_revocations: both take their seq from
-- token_revocation_seq, so the two are one sequence, dense as assigned,
-- and RevocationEvents reads them merged by seq. The Go step also appends
-- an event for each certificate revoked before this migration, so that
-- verifiers learn those too.
--
-- Portable to PostgreSQL but for the trigger (a trigger function there).

ALTER TABLE certificates ADD COLUMN thumbprint TEXT NOT NULL DEFAULT '';
CREATE INDEX certificates_thumbprint ON certificates (thumbprint) WHERE thumbprint <> '';
CREATE INDEX tokens_cnf ON tokens (cnf) WHERE cnf <> '';

CREATE TABLE certificate_revocations (
    seq        INTEGER NOT NULL PRIMARY KEY CHECK (seq > 0),
    serial     TEXT    NOT NULL UNIQUE REFERENCES certificates (serial),
    revoked_at BIGINT  NOT NULL,
    reason     TEXT    NOT NULL
);

CREATE TRIGGER certificate_revocations_no_update BEFORE UPDATE ON certificate_revocations
BEGIN SELECT RAISE(ABORT, 'certificate revocation events are append-only'); END;

CREATE TRIGGER certificate_revocations_no_delete BEFORE DELETE ON certificate_revocations
BEGIN SELECT RAISE(ABORT, 'certificate revocation events are append-only'); END;
