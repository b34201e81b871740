-- Certificates by identity, for IdentityHolders: which devices hold a SPIFFE
-- ID now, asked at every enrollment and renewal. Only unrevoked certificates
-- can be holders, so the index leaves the revoked ones out. Portable to
-- PostgreSQL (partial indexes exist in both).

CREATE INDEX certificates_holders ON certificates (spiffe_id, not_after) WHERE revoked_at IS NULL;
