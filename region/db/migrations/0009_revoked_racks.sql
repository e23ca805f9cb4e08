-- Certificates of deleted racks.  The certificate stays valid (signed by our CA) until
-- it expires, so every region refuses these fingerprints at the TLS handshake; regions
-- poll for new rows by id.
CREATE TABLE revoked_racks (
    id               bigserial PRIMARY KEY,
    system_id        text NOT NULL,
    cert_fingerprint text NOT NULL UNIQUE,
    revoked          timestamptz NOT NULL DEFAULT now()
);
