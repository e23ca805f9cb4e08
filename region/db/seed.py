"""Bulk rows for the scale benchmark and the listing tests: VM hosts and machines inserted
through the real schema in a handful of set-based statements (a 20,000-machine site in
seconds), never used by the region itself.

Per host: 2 storage pools, 2 NUMA nodes, 4 interfaces (two on the untagged VLAN of
fabric-0), 2 projects; per machine: 2 disks, 2 NICs, 1 static IP on `SEED_SUBNET`.  Odd
hosts and their machines are in zone `SEED_ZONE`, every tenth machine is allocated with
agent name `SEED_AGENT`.  Host addresses are loopback addresses on `port`, where the
caller makes sure nothing listens, and their next refresh is a year away.
"""

from __future__ import annotations

import attrs

SEED_SUBNET = "10.0.0.0/8"
SEED_ZONE = "seed-zone"
SEED_AGENT = "seed-model"
GIB = 1024**3


@attrs.frozen
class Seeded:
    hosts: int  # in the database now
    machines: int


def _setup_thd(cur) -> tuple[int, int]:
    """The seed's zone and subnet (made once); returns (zone id, subnet id)."""
    cur.execute("INSERT INTO zones (name, description) VALUES (%s, 'seeded') ON CONFLICT (name) DO NOTHING",
                (SEED_ZONE,))
    cur.execute("SELECT id FROM zones WHERE name = %s", (SEED_ZONE,))
    zone_id = cur.fetchone()[0]
    cur.execute("INSERT INTO subnets (name, cidr, vlan_id) SELECT 'seed-subnet', %s, id FROM vlans"
                " WHERE fabric_id = 0 AND vid = 0 ON CONFLICT (cidr) DO NOTHING", (SEED_SUBNET,))
    cur.execute("SELECT id FROM subnets WHERE cidr = %s", (SEED_SUBNET,))
    return zone_id, cur.fetchone()[0]


def seed_thd(cur, *, hosts: int, machines_per_host: int, port: int) -> Seeded:
    """Add `hosts` hosts with `machines_per_host` machines each (numbered after those already seeded)."""
    zone_id, subnet_id = _setup_thd(cur)
    cur.execute("SELECT count(*), coalesce(max(id), 0) FROM vm_hosts")
    first, after_id = cur.fetchone()
    cur.execute(
        "INSERT INTO vm_hosts (name, type, power_address, project, state, version, architectures, capabilities,"
        " cores, cpu_speed, memory, zone_id, pool_id, default_storage_pool, last_refresh, next_refresh)"
        " SELECT 'seed-host-' || g, 'lxd', '127.1.' || (g / 250) || '.' || (g %% 250 + 1) || ':' || %s,"
        " 'default', 'ready', '5.21', '{amd64/generic}', '{composable,storage_pools}', 64, 2400, %s,"
        " CASE WHEN g %% 2 = 1 THEN %s ELSE (SELECT id FROM zones WHERE is_default) END, 0, 'default',"
        " now(), now() + interval '1 year' FROM generate_series(%s, %s) g",
        (port, 256 * GIB, zone_id, first, first + hosts - 1))
    new_hosts = "SELECT id, project, zone_id FROM vm_hosts WHERE id > %s"
    cur.execute(f"INSERT INTO vm_host_storage_pools (host_id, name, type, path, total, used)"
                f" SELECT h.id, p.name, p.type, '/var/lib/lxd/' || p.name, %s, %s FROM ({new_hosts}) h"
                f" CROSS JOIN (VALUES ('default', 'dir'), ('fast', 'zfs')) p(name, type)",
                (2000 * GIB, 10 * GIB, after_id))
    cur.execute(f"INSERT INTO vm_host_numa_nodes (host_id, index, cores, memory, hugepages)"
                f" SELECT h.id, n, ARRAY(SELECT generate_series(n * 32, n * 32 + 31)), %s,"
                f" '[{{\"page_size\": 2097152, \"total\": 1024, \"free\": 1024}}]'"
                f" FROM ({new_hosts}) h CROSS JOIN generate_series(0, 1) n", (128 * GIB, after_id))
    cur.execute(f"INSERT INTO vm_host_interfaces (host_id, name, type, mac, numa_node, link_speed, vlan_id)"
                f" SELECT h.id, 'eth' || n, 'physical',"
                f" '52:54:' || lpad(to_hex(h.id), 6, '0') || lpad(to_hex(n), 2, '0') || '00', n %% 2, 10000,"
                f" CASE WHEN n < 2 THEN (SELECT id FROM vlans WHERE fabric_id = 0 AND vid = 0) END"
                f" FROM ({new_hosts}) h CROSS JOIN generate_series(0, 3) n", (after_id,))
    cur.execute(f"INSERT INTO vm_host_projects (host_id, name, description)"
                f" SELECT h.id, p, '' FROM ({new_hosts}) h CROSS JOIN unnest(ARRAY['default', 'other']) p",
                (after_id,))
    cur.execute("SELECT coalesce(max(id), 0) FROM machines")
    after_machine = cur.fetchone()[0]
    cur.execute(
        f"INSERT INTO machines (system_id, hostname, host_id, project, instance_name, origin, status,"
        f" power_state, architecture, cpu_count, memory, numa_nodes, zone_id, pool_id, agent_name)"
        f" SELECT 's' || h.id || 'x' || j, 'seed-h' || h.id || '-vm' || j, h.id, h.project,"
        f" 'seed-h' || h.id || '-vm' || j, 'composed', CASE WHEN j %% 10 = 0 THEN 'allocated' ELSE 'ready' END,"
        f" 'off', 'amd64/generic', 2, %s, ARRAY[j %% 2], h.zone_id, 0,"
        f" CASE WHEN j %% 10 = 0 THEN %s ELSE '' END"
        f" FROM ({new_hosts}) h CROSS JOIN generate_series(0, %s) j ORDER BY h.id, j",
        (4 * GIB, SEED_AGENT, after_id, machines_per_host - 1))
    cur.execute("INSERT INTO machine_disks (machine_id, name, size, storage_pool)"
                " SELECT m.id, d.name, d.size, d.pool FROM machines m CROSS JOIN (VALUES"
                " ('root', %s::bigint, 'default'), ('data', %s::bigint, 'fast')) d(name, size, pool)"
                " WHERE m.id > %s", (10 * GIB, 20 * GIB, after_machine))
    cur.execute("INSERT INTO machine_interfaces (machine_id, name, mac, attach_type, attach_name, boot)"
                " SELECT m.id, 'eth' || n, '00:16:3e:' || substr(lpad(to_hex(m.id * 2 + n), 6, '0'), 1, 2)"
                " || ':' || substr(lpad(to_hex(m.id * 2 + n), 6, '0'), 3, 2) || ':'"
                " || substr(lpad(to_hex(m.id * 2 + n), 6, '0'), 5, 2),"
                " CASE WHEN n = 0 THEN 'bridge' ELSE 'macvlan' END, 'eth' || n, n = 0"
                " FROM machines m CROSS JOIN generate_series(0, 1) n WHERE m.id > %s", (after_machine,))
    cur.execute("INSERT INTO static_ips (subnet_id, ip, machine_interface_id)"
                " SELECT %s, '10.0.0.0'::inet + i.id, i.id FROM machine_interfaces i"
                " WHERE i.machine_id > %s AND i.name = 'eth0'", (subnet_id, after_machine))
    cur.execute("SELECT (SELECT count(*) FROM vm_hosts), (SELECT count(*) FROM machines)")
    return Seeded(*cur.fetchone())

