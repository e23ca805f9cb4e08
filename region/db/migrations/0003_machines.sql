-- Machines (every machine is a VM on a VM host) and the refresh bookkeeping of hosts.

ALTER TABLE vm_hosts
    ADD COLUMN next_refresh        timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN refresh_owner       text,          -- region process holding the refresh lease
    ADD COLUMN refresh_lease_until timestamptz;

CREATE TABLE machines (
    id               serial PRIMARY KEY,
    system_id        text NOT NULL UNIQUE,
    hostname         text NOT NULL UNIQUE CHECK (length(hostname) BETWEEN 1 AND 255),
    host_id          integer NOT NULL REFERENCES vm_hosts (id) ON DELETE CASCADE,
    project          text NOT NULL,
    instance_name    text NOT NULL,
    origin           text NOT NULL CHECK (origin IN ('discovered', 'composed')),
    dynamic          boolean NOT NULL DEFAULT false,     -- composed for an allocation
    status           text NOT NULL DEFAULT 'ready',
    power_state      text NOT NULL DEFAULT 'unknown' CHECK (power_state IN ('on', 'off', 'unknown', 'error')),
    architecture     text NOT NULL DEFAULT '',
    cpu_count        integer NOT NULL CHECK (cpu_count >= 0),
    pinned_cores     integer[] NOT NULL DEFAULT '{}',
    memory           bigint NOT NULL CHECK (memory >= 0),  -- bytes
    hugepages_backed boolean NOT NULL DEFAULT false,
    numa_nodes       integer[] NOT NULL DEFAULT '{}',
    tags             text[] NOT NULL DEFAULT '{}',
    zone_id          integer NOT NULL REFERENCES zones (id),
    pool_id          integer NOT NULL REFERENCES resource_pools (id),
    owner_id         integer REFERENCES users (id) ON DELETE SET NULL,
    created          timestamptz NOT NULL DEFAULT now(),
    updated          timestamptz NOT NULL DEFAULT now(),
    UNIQUE (host_id, project, instance_name)
);

CREATE TABLE machine_disks (
    id           serial PRIMARY KEY,
    machine_id   integer NOT NULL REFERENCES machines (id) ON DELETE CASCADE,
    name         text NOT NULL,
    size         bigint NOT NULL CHECK (size >= 0),   -- bytes
    storage_pool text,                                 -- pool name on the host
    UNIQUE (machine_id, name)
);

CREATE TABLE machine_interfaces (
    id          serial PRIMARY KEY,
    machine_id  integer NOT NULL REFERENCES machines (id) ON DELETE CASCADE,
    name        text NOT NULL,
    mac         text,
    attach_type text,
    attach_name text,
    vid         integer NOT NULL DEFAULT 0,
    boot        boolean NOT NULL DEFAULT false,
    UNIQUE (machine_id, name)
);
CREATE INDEX machines_host ON machines (host_id);
