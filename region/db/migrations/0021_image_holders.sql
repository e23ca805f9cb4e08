-- Images on several regions (issue 12): each region keeps the LXD images it made in its own data
-- dir; this says which region (by the URL it serves them at) holds which, so a region without
-- the file sends a rack to one that has it.
CREATE TABLE image_holders (
    fingerprint text NOT NULL CHECK (fingerprint ~ '^[0-9a-f]{64}$'),
    region_url  text NOT NULL,
    created     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (fingerprint, region_url)
);
