-- Boot resources (MAAS's images).  MAAS keeps resource -> sets -> files; vmyard holds one
-- set and one file per resource, so they are columns of one row and the API shapes them
-- into MAAS's sets{}/files{} (the file's id is the resource's id).  The uploaded bytes live
-- in the region's data dir (images/); `received` counts the bytes already on disk, so an
-- interrupted upload resumes there.  `lxd_fingerprint` names the LXD image made from it
-- (the sha256 of the unified tarball that hosts are given).
CREATE TABLE boot_resources (
    id              serial PRIMARY KEY,
    name            text NOT NULL CHECK (name ~ '^[a-z0-9][a-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$'),
    architecture    text NOT NULL CHECK (architecture ~ '^[a-z0-9_]+/[a-z0-9_.-]+$'),
    rtype           text NOT NULL CHECK (rtype IN ('Synced', 'Uploaded')),
    title           text NOT NULL DEFAULT '',
    version         text NOT NULL,
    label           text NOT NULL DEFAULT 'uploaded',
    filename        text NOT NULL,
    filetype        text NOT NULL,
    size            bigint NOT NULL CHECK (size > 0),
    sha256          text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    received        bigint NOT NULL DEFAULT 0 CHECK (received BETWEEN 0 AND size),
    state           text NOT NULL DEFAULT 'uploading' CHECK (state IN ('uploading', 'complete', 'failed')),
    lxd_fingerprint text CHECK (lxd_fingerprint ~ '^[0-9a-f]{64}$'),
    lxd_size        bigint,
    created         timestamptz NOT NULL DEFAULT now(),
    updated         timestamptz NOT NULL DEFAULT now(),
    UNIQUE (name, architecture)
);

-- Which VM hosts already hold an image (filled when racks push images to hosts).
CREATE TABLE boot_resource_hosts (
    resource_id     integer NOT NULL REFERENCES boot_resources(id) ON DELETE CASCADE,
    host_id         integer NOT NULL REFERENCES vm_hosts(id) ON DELETE CASCADE,
    lxd_fingerprint text NOT NULL,
    created         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (resource_id, host_id)
);
