-- VM hosts (LXD, virsh) and what discovery finds on them.

CREATE TABLE vm_hosts (
    id                       serial PRIMARY KEY,
    name                     text NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 255),
    type                     text NOT NULL CHECK (type IN ('lxd', 'virsh')),
    power_address            text NOT NULL,
    project                  text NOT NULL DEFAULT '',
    state                    text NOT NULL DEFAULT 'awaiting-trust'
                             CHECK (state IN ('awaiting-trust', 'ready', 'error')),
    state_message            text NOT NULL DEFAULT '',
    certificate              text,           -- client certificate PEM (public)
    key_secret               text,           -- name in `secrets` of the encrypted private key
    server_fingerprint       text,           -- pinned LXD server certificate (SHA-256 hex)
    version                  text NOT NULL DEFAULT '',
    architectures            text[] NOT NULL DEFAULT '{}',
    capabilities             text[] NOT NULL DEFAULT '{}',
    tags                     text[] NOT NULL DEFAULT '{}',
    cores                    integer NOT NULL DEFAULT 0,
    cpu_speed                integer NOT NULL DEFAULT 0,      -- MHz
    memory                   bigint NOT NULL DEFAULT 0,       -- bytes
    zone_id                  integer NOT NULL REFERENCES zones (id),
    pool_id                  integer NOT NULL REFERENCES resource_pools (id),
    cpu_over_commit_ratio    double precision NOT NULL DEFAULT 1 CHECK (cpu_over_commit_ratio BETWEEN 0 AND 10),
    memory_over_commit_ratio double precision NOT NULL DEFAULT 1 CHECK (memory_over_commit_ratio BETWEEN 0 AND 10),
    default_storage_pool     text,
    default_macvlan_mode     text CHECK (default_macvlan_mode IN ('bridge', 'passthru', 'private', 'vepa')),
    last_refresh             timestamptz,
    created                  timestamptz NOT NULL DEFAULT now(),
    updated                  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE vm_host_storage_pools (
    id         serial PRIMARY KEY,
    host_id    integer NOT NULL REFERENCES vm_hosts (id) ON DELETE CASCADE,
    name       text NOT NULL,
    type       text NOT NULL,
    path       text NOT NULL DEFAULT '',
    total      bigint NOT NULL DEFAULT 0,
    used       bigint NOT NULL DEFAULT 0,
    UNIQUE (host_id, name)
);

CREATE TABLE vm_host_numa_nodes (
    host_id    integer NOT NULL REFERENCES vm_hosts (id) ON DELETE CASCADE,
    index      integer NOT NULL,
    cores      integer[] NOT NULL DEFAULT '{}',
    memory     bigint NOT NULL DEFAULT 0,
    hugepages  jsonb NOT NULL DEFAULT '[]',   -- [{"page_size", "total", "free"}]
    PRIMARY KEY (host_id, index)
);

CREATE TABLE vm_host_interfaces (
    host_id           integer NOT NULL REFERENCES vm_hosts (id) ON DELETE CASCADE,
    name              text NOT NULL,
    type              text NOT NULL DEFAULT '',
    mac               text NOT NULL DEFAULT '',
    numa_node         integer,
    sriov_max_vfs     integer NOT NULL DEFAULT 0,
    sriov_current_vfs integer NOT NULL DEFAULT 0,
    link_speed        integer,
    PRIMARY KEY (host_id, name)
);

CREATE TABLE vm_host_projects (
    host_id     integer NOT NULL REFERENCES vm_hosts (id) ON DELETE CASCADE,
    name        text NOT NULL,
    description text NOT NULL DEFAULT '',
    PRIMARY KEY (host_id, name)
);
