-- A device's current certificates, for CurrentDeviceCertificates and
-- DeviceIdentities, which every policy reload asks of each device (and a
-- renewal that fails attestation of its device): unrevoked, by device and
-- not_after, so that only the certificates not yet expired are read, not
-- the device's whole history (every renewal adds one, kept after it
-- expires).
CREATE INDEX certificates_current ON certificates (ek_hash, not_after) WHERE revoked_at IS NULL;
