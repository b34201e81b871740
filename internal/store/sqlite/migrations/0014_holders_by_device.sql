-- Certificates by identity and device, for IdentityHolders, which every
-- enrollment and renewal asks twice: it visits each device that holds the
-- identity once (a skip scan over ek_hash) and seeks one live certificate
-- of it by not_after, so its cost does not grow with the certificates a
-- device renews (every renewal adds one, valid until it expires; a
-- workload renewing in a loop had each renewal read all of them). Replaces
-- 0009's index on (spiffe_id, not_after): same count of indexes.

DROP INDEX certificates_holders;
CREATE INDEX certificates_holders ON certificates (spiffe_id, ek_hash, not_after) WHERE revoked_at IS NULL;
