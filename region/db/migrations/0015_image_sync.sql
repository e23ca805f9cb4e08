-- Syncing images from a simplestreams source (issue 12): one row, the lease that lets one
-- region at a time sync, and how the last sync went (shown by boot-sources/).
CREATE TABLE image_sync (
    id          integer PRIMARY KEY CHECK (id = 1),
    region_id   text,                 -- the region holding the lease
    lease_until timestamptz,          -- a sync runs while this is in the future
    started     timestamptz,
    finished    timestamptz,
    error       text
);
INSERT INTO image_sync (id) VALUES (1);
