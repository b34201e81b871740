-- Certificates by device and identity, and by identity and device, for
-- DeviceIdentities and IdentityHolders, which every renewal asks: each
-- visits the identities of a device (or the devices holding an identity)
-- once, by a skip scan (ORDER BY ... LIMIT 1 from the last value), and
-- seeks one live certificate of each by not_after, so its cost does not
-- grow with the certificates a device renews (each renewal adds one, valid
-- until it expires; DISTINCT over certificates_current or over
-- (spiffe_id, not_after) read every one still valid, which is all of them
-- for a workload renewing often). certificates_holders is replaced, not
-- added to: one more index in all, as on SQLite (0014, 0020).

DROP INDEX certificates_holders;
CREATE INDEX certificates_holders ON certificates (spiffe_id, ek_hash, not_after) WHERE revoked_at IS NULL;
CREATE INDEX certificates_identities ON certificates (ek_hash, spiffe_id, not_after) WHERE revoked_at IS NULL;
