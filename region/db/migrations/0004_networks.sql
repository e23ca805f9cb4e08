-- Networks as MAAS models them: spaces, fabrics, VLANs, subnets, IP ranges, static IPs,
-- and which VLAN each VM-host interface is on.

CREATE TABLE spaces (
    id          serial PRIMARY KEY,
    name        text NOT NULL CONSTRAINT spaces_name_key UNIQUE CHECK (length(name) BETWEEN 1 AND 256),
    description text NOT NULL DEFAULT ''
);

CREATE TABLE fabrics (
    id          serial PRIMARY KEY,
    name        text NOT NULL CONSTRAINT fabrics_name_key UNIQUE CHECK (length(name) BETWEEN 1 AND 256),
    class_type  text,
    description text NOT NULL DEFAULT ''
);

CREATE TABLE vlans (
    id          serial PRIMARY KEY,
    fabric_id   integer NOT NULL REFERENCES fabrics (id) ON DELETE CASCADE,
    vid         integer NOT NULL CONSTRAINT vlans_vid_check CHECK (vid BETWEEN 0 AND 4094),
    name        text NOT NULL,
    mtu         integer NOT NULL DEFAULT 1500 CONSTRAINT vlans_mtu_check CHECK (mtu BETWEEN 552 AND 65535),
    dhcp_on     boolean NOT NULL DEFAULT false,
    space_id    integer REFERENCES spaces (id) ON DELETE SET NULL,
    description text NOT NULL DEFAULT '',
    CONSTRAINT vlans_fabric_vid_key UNIQUE (fabric_id, vid)
);

-- Subnets are not deleted with their VLAN: the application refuses instead, naming them.
CREATE TABLE subnets (
    id          serial PRIMARY KEY,
    name        text NOT NULL CONSTRAINT subnets_name_key UNIQUE CHECK (length(name) BETWEEN 1 AND 255),
    cidr        cidr NOT NULL CONSTRAINT subnets_cidr_key UNIQUE,
    vlan_id     integer NOT NULL REFERENCES vlans (id),
    gateway_ip  inet,
    dns_servers text[] NOT NULL DEFAULT '{}',
    description text NOT NULL DEFAULT '',
    managed     boolean NOT NULL DEFAULT true,
    allow_dns   boolean NOT NULL DEFAULT true,
    allow_proxy boolean NOT NULL DEFAULT true
);
CREATE INDEX subnets_vlan ON subnets (vlan_id);

CREATE TABLE ip_ranges (
    id        serial PRIMARY KEY,
    subnet_id integer NOT NULL REFERENCES subnets (id) ON DELETE CASCADE,
    type      text NOT NULL CHECK (type IN ('reserved', 'dynamic')),
    start_ip  inet NOT NULL,
    end_ip    inet NOT NULL,
    comment   text NOT NULL DEFAULT '',
    CHECK (start_ip <= end_ip)
);
CREATE INDEX ip_ranges_subnet ON ip_ranges (subnet_id);

-- The UNIQUE on ip is what makes concurrent allocation safe.
CREATE TABLE static_ips (
    id                   serial PRIMARY KEY,
    subnet_id            integer NOT NULL REFERENCES subnets (id) ON DELETE CASCADE,
    ip                   inet NOT NULL CONSTRAINT static_ips_ip_key UNIQUE,
    machine_interface_id integer REFERENCES machine_interfaces (id) ON DELETE CASCADE,
    alloc_type           text NOT NULL DEFAULT 'user' CHECK (alloc_type IN ('auto', 'sticky', 'user')),
    created              timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX static_ips_subnet ON static_ips (subnet_id);
CREATE INDEX static_ips_machine_interface ON static_ips (machine_interface_id);

-- MAAS's default fabric has id 0 (the serial starts at 1, so no clash).
INSERT INTO fabrics (id, name) VALUES (0, 'fabric-0');
INSERT INTO vlans (fabric_id, vid, name) VALUES (0, 0, 'untagged');

-- Interfaces are referred to by id in MAAS interface constraints.
ALTER TABLE vm_host_interfaces
    ADD COLUMN id      serial UNIQUE,
    ADD COLUMN vlan_id integer REFERENCES vlans (id) ON DELETE SET NULL,
    ADD COLUMN tags    text[] NOT NULL DEFAULT '{}';
