-- Boot resources hold files (issue 12): MAAS's resource -> set -> files, with vmyard's one set
-- still on the resource row, so an LXD split image (metadata tarball + rootfs) is one resource
-- with two files.  Each file is received on its own (`received`); existing files keep their id
-- (= the resource's), so an upload in progress resumes at the same upload_uri and disk file.
CREATE TABLE boot_resource_files (
    id          serial PRIMARY KEY,
    resource_id integer NOT NULL REFERENCES boot_resources (id) ON DELETE CASCADE,
    filename    text NOT NULL,
    filetype    text NOT NULL,
    size        bigint NOT NULL CHECK (size > 0),
    sha256      text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    received    bigint NOT NULL DEFAULT 0 CHECK (received BETWEEN 0 AND size),
    UNIQUE (resource_id, filetype)
);
INSERT INTO boot_resource_files (id, resource_id, filename, filetype, size, sha256, received)
    SELECT id, id, filename, filetype, size, sha256, received FROM boot_resources;
SELECT setval(pg_get_serial_sequence('boot_resource_files', 'id'),
              GREATEST((SELECT max(id) FROM boot_resource_files), (SELECT last_value FROM boot_resources_id_seq)));
ALTER TABLE boot_resources DROP COLUMN filename, DROP COLUMN filetype, DROP COLUMN size, DROP COLUMN sha256,
    DROP COLUMN received;
