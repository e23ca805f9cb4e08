"""Reads of many machines or VM hosts in a constant number of queries, whatever their number.

A machine listing is five queries: the network catalog with the zones and resource pools; the
machines with their owner and allocation; their disks; their NICs with static IPs; their hosts
with storage pools and interfaces.  A listing reusing rendered machines reads their row versions
first (`versions_thd`) and loads only the machines it lacks.  A host listing is five too, its usage read from the totals that triggers keep
per host and project (migration 0024) instead of loading, or summing, each host's VMs.
"""

from __future__ import annotations

import attrs
import orjson

from region.db import hosts, machines
from region.db.allocations import Allocation
from region.db.named import NamedObject
from region.db.network_models import (
    FABRIC_COLUMNS,
    SPACE_COLUMNS,
    SUBNET_COLUMNS,
    VLAN_COLUMNS,
    Fabric,
    HostInterfaceNetwork,
    Space,
    Vlan,
    subnet_row,
)
from region.db.networks import IFACE_COLUMNS, NetworkCatalog, interface_network

_NAMED = "id, name, description, is_default"


def _qualified(columns: str, alias: str) -> str:
    return ", ".join(f"{alias}.{c.strip()}" for c in columns.split(","))


def _json_rows(columns: str, table: str, order: str) -> str:
    """A subquery giving every row of `table` as a JSON array of `columns` (row order kept)."""
    return f"(SELECT coalesce(json_agg(json_build_array({columns}) ORDER BY {order}), '[]') FROM {table})"


def _catalog_thd(cur) -> tuple[NetworkCatalog, dict[int, NamedObject], dict[int, NamedObject]]:
    """Every fabric, VLAN, space and subnet (the same values `networks.catalog_thd` reads), zone
    and resource pool, in one query."""
    cur.execute("SELECT " + ", ".join([
        _json_rows(FABRIC_COLUMNS, "fabrics", "id"), _json_rows(VLAN_COLUMNS, "vlans", "fabric_id, vid"),
        _json_rows(SPACE_COLUMNS, "spaces", "id"), _json_rows(SUBNET_COLUMNS, "subnets", "id"),
        _json_rows(_NAMED, "zones", "id"), _json_rows(_NAMED, "resource_pools", "id")]))
    fabrics, vlans, spaces, subnets, zones, pools = cur.fetchone()
    catalog = NetworkCatalog(fabrics={r[0]: Fabric(*r) for r in fabrics}, vlans={r[0]: Vlan(*r) for r in vlans},
                             spaces={r[0]: Space(*r) for r in spaces}, subnets=[subnet_row(r) for r in subnets])
    return catalog, {r[0]: NamedObject(*r) for r in zones}, {r[0]: NamedObject(*r) for r in pools}


# -- machines ------------------------------------------------------------------------------------

@attrs.frozen
class MachineRow:
    """A machine with what its MAAS object names besides its own columns."""

    machine: machines.Machine
    zone: NamedObject
    pool: NamedObject
    owner: str | None  # username
    allocation: Allocation


@attrs.frozen
class MachineListing:
    rows: list[MachineRow]
    hosts: dict[int, hosts.VMHost]  # the machines' hosts, by id
    host_interfaces: dict[int, list[HostInterfaceNetwork]]  # by host id, ordered by name
    catalog: NetworkCatalog


def _hosts_with_interfaces_thd(cur, selected: str, args: tuple, catalog: NetworkCatalog):
    # Each host's pools and interfaces as one JSON text that orjson parses: psycopg2 parses a
    # json value with the json module, ~60 ms for a listing's 6,000 at 1,000 hosts.
    pools = "SELECT json_agg(json_build_array(id, name, type, path, total, used) ORDER BY p.id)::text" \
            " FROM vm_host_storage_pools p WHERE p.host_id = h.id"
    interfaces = f"SELECT json_agg(json_build_array({IFACE_COLUMNS}) ORDER BY i.name)::text" \
                 " FROM vm_host_interfaces i WHERE i.host_id = h.id"
    cur.execute(f"SELECT {_qualified(hosts.COLUMNS, 'h')}, ({pools}), ({interfaces})"
                f" FROM vm_hosts h WHERE h.id IN (SELECT host_id FROM machines {selected})", args)
    found, host_interfaces = {}, {}
    for *row, pools_rows, interface_rows in cur.fetchall():
        found[row[0]] = hosts.VMHost(*row, storage_pools=[hosts.HostStoragePool(*p)
                                                          for p in orjson.loads(pools_rows or "[]")])
        host_interfaces[row[0]] = [interface_network(r, catalog) for r in orjson.loads(interface_rows or "[]")]
    return found, host_interfaces


_WIDTH = len(machines.COLUMNS.split(","))
_ZONE, _POOL = (machines.COLUMNS.replace(" ", "").split(",").index(c) for c in ("zone_id", "pool_id"))


def _rows_thd(cur, selected: str, args: tuple, zones: dict[int, NamedObject],
              pools: dict[int, NamedObject]) -> list[MachineRow]:
    """The machines `selected` selects, ordered by id, with their owners, disks and NICs (three
    queries; one when there is none).

    Disks and NICs are selected by the same WHERE clause as the machines (in the same
    snapshot): a list of 20,000 ids would cost more to send and plan than the clause to rerun."""
    cur.execute(
        f"SELECT {_qualified(machines.COLUMNS, 'm')}, m.agent_name, NULLIF(m.owner_data, '{{}}'), m.distro_series,"
        f" u.username FROM (SELECT * FROM machines {selected}) m LEFT JOIN users u ON u.id = m.owner_id"
        f" ORDER BY m.id", args)
    found = []
    while batch := cur.fetchmany(machines.FETCH_BATCH):
        found.extend(batch)
    if not found:
        return []
    machine_ids = f"IN (SELECT id FROM machines {selected})"
    disks, nics = machines.disks_of_thd(cur, machine_ids, args), machines.nics_of_thd(cur, machine_ids, args)
    machine, rows = machines.Machine, []
    for r in found:
        agent_name, owner_data, distro_series, owner = r[_WIDTH:]
        rows.append(MachineRow(machine(*r[:_WIDTH], disks=disks.get(r[0], []), interfaces=nics.get(r[0], [])),
                               zones[r[_ZONE]], pools[r[_POOL]], owner,
                               Allocation(agent_name, owner_data or {}, distro_series)))
    return rows


def machines_thd(cur, query: machines.MachineQuery = machines.MachineQuery(), *,
                 visible_to: int | None = None, ids: list[int] | None = None) -> MachineListing:
    """The machines `query` selects (and, given `ids`, only those), ordered by id, with everything
    their objects show; `visible_to` (a non-admin's user id) keeps the unowned ones and theirs."""
    selected, args = machines.where_clause(query, visible_to, ids)
    catalog, zones, pools = _catalog_thd(cur)
    rows = _rows_thd(cur, selected, args, zones, pools)
    if not rows:
        return MachineListing([], {}, {}, catalog)
    found_hosts, host_interfaces = _hosts_with_interfaces_thd(cur, selected, args, catalog)
    return MachineListing(rows, found_hosts, host_interfaces, catalog)


# -- row versions: what a cache of rendered machines is keyed on ---------------------------------

# A machine's row versions: (id, host id, zone id, pool id, then which committed versions of its
# own rows its object shows: its row's xmin, its owner's username, and `id.xmin` of each disk,
# NIC and static IP ('NIC/IP' per link), in id order).  PostgreSQL gives a row a new xmin at
# every write (and a new id when re-inserted), so equal versions mean the same rows.  What
# machines share (catalog, zones, pools, hosts) is not in it: a cache compares the rendered
# form of those.  A plain row: an object per machine took ~0.1 s at 20,000.
MachineVersion = tuple


@attrs.frozen
class VersionedListing:
    """A listing's machines as versions, in id order, with everything they share, read in one
    snapshot; `rows_thd` loads the machines a cache lacks."""

    versions: list[MachineVersion]  # in id order
    hosts: dict[int, hosts.VMHost]
    host_interfaces: dict[int, list[HostInterfaceNetwork]]
    catalog: NetworkCatalog
    zones: dict[int, NamedObject]
    pools: dict[int, NamedObject]


def versions_thd(cur, query: machines.MachineQuery = machines.MachineQuery(), *,
                 visible_to: int | None = None) -> VersionedListing:
    """The versions of the machines `query` selects (as `machines_thd`) and what they share, in
    three queries (two when there is none)."""
    selected, args = machines.where_clause(query, visible_to)
    catalog, zones, pools = _catalog_thd(cur)
    machine_ids = f"IN (SELECT id FROM machines {selected})"
    # Sorted, then aggregated: ~2× faster than ORDER BY inside string_agg.
    cur.execute(
        "SELECT m.id, m.host_id, m.zone_id, m.pool_id, m.xmin::text, u.username, d.versions, n.versions"
        f" FROM (SELECT id, host_id, zone_id, pool_id, xmin, owner_id FROM machines {selected}) m"
        " LEFT JOIN users u ON u.id = m.owner_id"
        " LEFT JOIN (SELECT machine_id, string_agg(id || '.' || xmin, ',') versions"
        "            FROM (SELECT machine_id, id, xmin FROM machine_disks"
        f"                 WHERE machine_id {machine_ids} ORDER BY machine_id, id) d"
        "            GROUP BY machine_id) d ON d.machine_id = m.id"
        " LEFT JOIN (SELECT machine_id, string_agg(version, ',') versions"
        "            FROM (SELECT i.machine_id, i.id || '.' || i.xmin || coalesce('/' || s.id || '.' || s.xmin, '')"
        "                  AS version FROM machine_interfaces i"
        "                  LEFT JOIN static_ips s ON s.machine_interface_id = i.id"
        f"                 WHERE i.machine_id {machine_ids} ORDER BY i.machine_id, i.id, s.id) n"
        "            GROUP BY machine_id) n ON n.machine_id = m.id"
        " ORDER BY m.id", args * 3)
    versions: list[MachineVersion] = []
    while batch := cur.fetchmany(machines.FETCH_BATCH):
        versions.extend(batch)
    if not versions:
        return VersionedListing([], {}, {}, catalog, zones, pools)
    found_hosts, host_interfaces = _hosts_with_interfaces_thd(cur, selected, args, catalog)
    return VersionedListing(versions, found_hosts, host_interfaces, catalog, zones, pools)


def rows_thd(cur, versioned: VersionedListing, query: machines.MachineQuery = machines.MachineQuery(), *,
             visible_to: int | None = None, ids: list[int] | None = None) -> MachineListing:
    """The machines of `versioned` (read by `query` and `visible_to` as it was) or, given `ids`,
    only those, with everything their objects show; in the snapshot `versioned` was read in."""
    selected, args = (machines.where_clause(machines.MachineQuery(), None, ids) if ids is not None
                      else machines.where_clause(query, visible_to))
    return MachineListing(_rows_thd(cur, selected, args, versioned.zones, versioned.pools), versioned.hosts,
                          versioned.host_interfaces, versioned.catalog)


# -- VM hosts ------------------------------------------------------------------------------------

@attrs.frozen
class HostUsage:
    """What the VMs of a host's tracked project were given (what MAAS shows as `used`)."""

    vms: int = 0
    cores: int = 0
    memory: int = 0  # bytes
    storage: int = 0  # bytes, every disk
    pools: dict[str, int] = attrs.field(factory=dict)  # bytes by storage pool name


@attrs.frozen
class HostRow:
    host: hosts.VMHost
    zone: NamedObject
    pool: NamedObject
    usage: HostUsage


_HOST_PROJECT = [c.strip() for c in hosts.COLUMNS.split(",")].index("project")


def hosts_thd(cur, host_ids: list[int] | None = None) -> list[HostRow]:
    """Every VM host (or those of `host_ids`), ordered by id, with zone, pool and usage."""
    only, args = ("WHERE h.id = ANY(%s)", (host_ids,)) if host_ids is not None else ("", ())
    cur.execute(f"SELECT {_qualified(hosts.COLUMNS, 'h')}, {_qualified(_NAMED, 'z')}, {_qualified(_NAMED, 'p')}"
                f" FROM vm_hosts h JOIN zones z ON z.id = h.zone_id JOIN resource_pools p ON p.id = h.pool_id"
                f" {only} ORDER BY h.id", args)
    selected = cur.fetchall()
    ids = [r[0] for r in selected]
    pools = hosts.pools_thd(cur, ids)
    # Every project's totals of these hosts, the tracked one kept below: filtering on host_id
    # alone is an index scan whatever the planner knows (a join to vm_hosts may scan it whole).
    tracked = {r[0]: r[_HOST_PROJECT] for r in selected}
    cur.execute("SELECT host_id, project, vms, cores, memory FROM vm_host_vm_totals WHERE host_id = ANY(%s)", (ids,))
    vm_sums = {host_id: sums for host_id, project, *sums in cur.fetchall() if tracked[host_id] == project}
    cur.execute("SELECT host_id, project, storage_pool, size FROM vm_host_disk_totals WHERE host_id = ANY(%s)",
                (ids,))
    disk_sums: dict[int, dict[str | None, int]] = {}
    for host_id, project, pool_name, size in cur.fetchall():
        if tracked[host_id] == project:
            disk_sums.setdefault(host_id, {})[pool_name] = size
    width = len(hosts.COLUMNS.split(","))
    found = []
    for r in selected:
        host_id = r[0]
        vms, cores, memory = vm_sums.get(host_id, (0, 0, 0))
        by_pool = disk_sums.get(host_id, {})
        usage = HostUsage(vms, int(cores), int(memory), sum(by_pool.values()),
                          {name: size for name, size in by_pool.items() if name is not None})
        found.append(HostRow(hosts.VMHost(*r[:width], storage_pools=pools.get(host_id, [])),
                             NamedObject(*r[width:width + 4]), NamedObject(*r[width + 4:width + 8]), usage))
    return found
