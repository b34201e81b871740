-- Certificates by device and identity, for DeviceIdentities, which every
-- renewal asks: it visits each identity the device holds once (a skip scan
-- over spiffe_id) and seeks one live certificate of it by not_after, so
-- its cost does not grow with the certificates the device renews (each
-- renewal adds one, valid until it expires; a scan of certificates_current
-- by (ek_hash, not_after) reads every one still valid, which is all of them
-- for a workload renewing often).

CREATE INDEX certificates_identities ON certificates (ek_hash, spiffe_id, not_after) WHERE revoked_at IS NULL;
