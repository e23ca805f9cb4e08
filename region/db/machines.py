"""Machines: every machine is an LXD instance (a VM or a container) on a VM host, with its
disks and NICs.

Discovery keeps the rows of a host's tracked project in step with what the
host reports (`machine_sync.sync_discovered_thd`); composing adds rows with
origin 'composed'.  Memory is stored in bytes; the API shows MiB.
"""

from __future__ import annotations

import datetime

import attrs

from common.models import VIRTUAL_MACHINE, VMDisk
from region.db.errors import NotFound
from region.db.interfaces import InterfaceLink
from region.db.pool import Statement
from region.db.prepared import Prepared


@attrs.frozen
class MachineDisk:
    id: int
    name: str
    size: int  # bytes
    pool: str | None


@attrs.frozen
class MachineNic:
    id: int
    name: str
    mac: str | None
    attach_type: str | None
    attach_name: str | None
    vid: int
    boot: bool
    vlan_id: int | None = None  # its own VLAN; None: its host interface's (unless disconnected)
    disconnected: bool = False
    links: list[InterfaceLink] = attrs.field(factory=list)  # to subnets (interfaces.py)

    @property
    def ips(self) -> list[tuple[str, int]]:
        """(address, subnet id) of each link holding an address."""
        return [(link.ip, link.subnet_id) for link in self.links if link.ip is not None]


@attrs.frozen
class Machine:
    id: int
    system_id: str
    hostname: str
    host_id: int
    project: str
    instance_name: str
    origin: str
    dynamic: bool
    status: str
    power_state: str
    architecture: str
    cpu_count: int
    pinned_cores: list[int]
    memory: int  # bytes
    hugepages_backed: bool
    numa_nodes: list[int]
    tags: list[str]
    zone_id: int
    pool_id: int
    owner_id: int | None
    created: datetime.datetime
    instance_type: str = VIRTUAL_MACHINE  # or "container"
    status_message: str = ""  # what the machine is doing (deploy, release), as MAAS shows it
    disks: list[MachineDisk] = attrs.field(factory=list)
    interfaces: list[MachineNic] = attrs.field(factory=list)


COLUMNS = (
    "id, system_id, hostname, host_id, project, instance_name, origin, dynamic, status, power_state,"
    " architecture, cpu_count, pinned_cores, memory, hugepages_backed, numa_nodes, tags, zone_id,"
    " pool_id, owner_id, created, instance_type, status_message"
)


def disks_json(source: str = "machine_disks d WHERE d.machine_id = m.id") -> str:
    """A machine's disks as one JSON column, [[id, name, size, pool], ...] by id, read from
    `source` (rows aliased d); `disks_from` turns it back into MachineDisks."""
    return ("COALESCE((SELECT json_agg(json_build_array(d.id, d.name, d.size, d.storage_pool) ORDER BY d.id)"
            f" FROM {source}), '[]'::json)")


def disks_from(rows: list) -> list[MachineDisk]:
    return [MachineDisk(*d) for d in rows]


FETCH_BATCH = 2000  # rows per fetch: converting rows holds the GIL, so a big result comes in parts


def fetched(cur):
    """The rows of the last query, a batch at a time (other threads, the reactor's among them,
    run between batches)."""
    while batch := cur.fetchmany(FETCH_BATCH):
        yield from batch


def disks_thd(cur, ids: list[int]) -> dict[int, list[MachineDisk]]:
    """The disks of the machines `ids`, by machine id."""
    return disks_of_thd(cur, "= ANY(%s)", (ids,))


def disks_of_thd(cur, which: str, args: tuple) -> dict[int, list[MachineDisk]]:
    """The disks of the machines whose id `which` selects (the SQL after `machine_id`, e.g.
    `= ANY(%s)` or `IN (SELECT id FROM machines WHERE ...)`), by machine id, in id order."""
    cur.execute("SELECT machine_id, id, name, size, storage_pool FROM machine_disks"
                f" WHERE machine_id {which} ORDER BY machine_id, id", args)
    disks: dict[int, list[MachineDisk]] = {}
    disk = MachineDisk
    for r in fetched(cur):
        found = disks.get(r[0])
        if found is None:
            found = disks[r[0]] = []
        found.append(disk(r[1], r[2], r[3], r[4]))
    return disks


def nics_thd(cur, ids: list[int]) -> dict[int, list[MachineNic]]:
    """The NICs of the machines `ids` with their links, by machine id."""
    return nics_of_thd(cur, "= ANY(%s)", (ids,))


def nics_of_thd(cur, which: str, args: tuple) -> dict[int, list[MachineNic]]:
    """The NICs with their links of the machines whose id `which` selects (as `disks_of_thd`), by
    machine id (one query: a NIC's row comes once per link, or once with no link)."""
    cur.execute("SELECT i.machine_id, i.id, i.name, i.mac, i.attach_type, i.attach_name, i.vid, i.boot,"
                " i.vlan_id, i.disconnected, s.id, s.mode, host(s.ip), s.subnet_id, s.default_gateway"
                " FROM machine_interfaces i LEFT JOIN static_ips s ON s.machine_interface_id = i.id"
                f" WHERE i.machine_id {which} ORDER BY i.id, s.id", args)
    nics: dict[int, list[MachineNic]] = {}
    nic, make_nic, link = None, MachineNic, InterfaceLink
    for r in fetched(cur):
        if nic is None or nic.id != r[1]:
            nic = make_nic(r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9])
            found = nics.get(r[0])
            if found is None:
                found = nics[r[0]] = []
            found.append(nic)
        if r[10] is not None:
            nic.links.append(link(r[10], r[11], r[12], r[13], r[14]))
    return nics


def _machines(cur, where: str, args: tuple) -> list[Machine]:
    cur.execute(f"SELECT {COLUMNS} FROM machines {where} ORDER BY id", args)
    rows = cur.fetchall()
    disks, nics = disks_thd(cur, [r[0] for r in rows]), nics_thd(cur, [r[0] for r in rows])
    return [Machine(*r, disks=disks.get(r[0], []), interfaces=nics.get(r[0], [])) for r in rows]


@attrs.frozen
class MachineQuery:
    """Which machines to list; every given criterion must hold (empty: any)."""

    hostnames: tuple[str, ...] = ()
    system_ids: tuple[str, ...] = ()
    mac_addresses: tuple[str, ...] = ()
    zone: str | None = None  # name
    pool: str | None = None  # name
    agent_name: str | None = None  # allocated with this agent name (Juju: its model)
    tags: tuple[str, ...] = ()  # every one of them
    host_id: int | None = None
    owner_id: int | None = None
    statuses: tuple[str, ...] = ()  # vmyard status names
    owners: tuple[str, ...] = ()  # usernames


def where_clause(query: MachineQuery, visible_to: int | None = None,
                 ids: list[int] | None = None) -> tuple[str, tuple]:
    """The WHERE clause (over `machines`, unqualified) and its arguments that select `query`'s
    machines among those `visible_to` may see (None: all), and only `ids` when given."""
    clauses: list[str] = []
    args: list = []

    def require(clause: str, value) -> None:
        clauses.append(clause)
        args.append(value)

    if query.hostnames:
        require("hostname = ANY(%s)", list(query.hostnames))
    if query.system_ids:
        require("system_id = ANY(%s)", list(query.system_ids))
    if query.mac_addresses:
        require("id IN (SELECT machine_id FROM machine_interfaces WHERE lower(mac) = ANY(%s))",
                [mac.lower() for mac in query.mac_addresses])
    if query.zone:
        require("zone_id IN (SELECT id FROM zones WHERE name = %s)", query.zone)
    if query.pool:
        require("pool_id IN (SELECT id FROM resource_pools WHERE name = %s)", query.pool)
    if query.agent_name:
        require("agent_name = %s", query.agent_name)
    if query.tags:
        require("tags @> %s::text[]", list(query.tags))
    if query.host_id is not None:
        require("host_id = %s", query.host_id)
    if query.owner_id is not None:
        require("owner_id = %s", query.owner_id)
    if query.statuses:
        require("status = ANY(%s)", list(query.statuses))
    if query.owners:
        require("owner_id IN (SELECT id FROM users WHERE username = ANY(%s))", list(query.owners))
    if visible_to is not None:
        require("(owner_id IS NULL OR owner_id = %s)", visible_to)
    if ids is not None:
        require("id = ANY(%s)", list(ids))
    return ("WHERE " + " AND ".join(clauses) if clauses else ""), tuple(args)


def list_thd(cur, query: MachineQuery = MachineQuery(), *, visible_to: int | None = None) -> list[Machine]:
    """The machines `query` selects; `visible_to` (a non-admin's user id) keeps only the
    unowned ones and theirs."""
    return _machines(cur, *where_clause(query, visible_to))


def list_for_host_thd(cur, host_id: int) -> list[Machine]:
    return _machines(cur, "WHERE host_id = %s", (host_id,))


def get_thd(cur, system_id: str, *, visible_to: int | None = None) -> Machine:
    """The machine; NotFound too when `visible_to` (a non-admin's user id) may not see it."""
    found = list_thd(cur, MachineQuery(system_ids=(system_id,)), visible_to=visible_to)
    if not found:
        raise NotFound("Machine")
    return found[0]


_DELETE = Prepared("delete_machine", "DELETE FROM machines WHERE id = %s")


def delete_statement(machine_id: int) -> Statement[None]:
    """The machine's record goes, and with it (ON DELETE CASCADE) its disks, NICs and IPs."""
    return Statement(_DELETE, (machine_id,))


def delete_thd(cur, machine_id: int) -> None:
    # Nothing reads the outcome: it can ride with the transaction's next round trip (the COMMIT).
    cur.execute_later(_DELETE, (machine_id,))


# -- compose: reserve, finish, abandon ---------------------------------------------------------

COMPOSE_GRACE_SECONDS = 600  # a 'composing' record with no VM on the host after this is dropped


@attrs.frozen
class NewNic:
    name: str
    attach_type: str
    attach_name: str
    vid: int
    host_interface_id: int | None = None


@attrs.frozen
class NewMachine:
    """A VM about to be composed: placed, but not yet on the host (hostname None: `vm-<random>`;
    zone_id None: the default zone)."""

    hostname: str | None
    host_id: int
    project: str
    architecture: str
    cpu_count: int
    memory: int  # bytes
    pinned_cores: list[int]
    hugepages_backed: bool
    numa_nodes: list[int]
    zone_id: int | None
    pool_id: int
    owner_id: int | None
    dynamic: bool
    tags: list[str]
    disks: list[VMDisk]
    nics: list[NewNic]
    composing_region: str | None = None
    instance_type: str = VIRTUAL_MACHINE


def hostname_taken_thd(cur, hostname: str) -> bool:
    cur.execute("SELECT 1 FROM machines WHERE hostname = %s", (hostname,))
    return cur.fetchone() is not None


def hostname_taken_message(hostname: str) -> str:
    return f'Node with hostname "{hostname}" already exists.'


NIC_COLUMNS = "id, name, mac, attach_type, attach_name, vid, boot, vlan_id, disconnected"


def with_nics_thd(cur, machine: Machine) -> Machine:
    """The machine with its NICs read (with the MACs and static IP links they hold)."""
    return attrs.evolve(machine, interfaces=nics_thd(cur, [machine.id]).get(machine.id, []))


def set_power_state_thd(cur, machine_id: int, state: str) -> None:
    cur.execute("UPDATE machines SET power_state = %s, updated = now() WHERE id = %s", (state, machine_id))


def update_thd(cur, machine_id: int, changes: dict) -> Machine:
    allowed = {"hostname", "zone_id", "pool_id", "tags", "status", "owner_id", "dynamic"}
    if set(changes) - allowed:
        raise ValueError(f"not updatable: {sorted(set(changes) - allowed)}")
    if changes:
        assignments = ", ".join(f"{column} = %s" for column in changes)
        cur.execute(f"UPDATE machines SET {assignments}, updated = now() WHERE id = %s",
                    (*changes.values(), machine_id))
    return _machines(cur, "WHERE id = %s", (machine_id,))[0]


def transfer_owner_thd(cur, from_id: int, to_id: int) -> None:
    """Every machine `from_id` owns becomes `to_id`'s, allocation details and all."""
    cur.execute("UPDATE machines SET owner_id = %s, updated = now() WHERE owner_id = %s", (to_id, from_id))


def vfs_used_thd(cur, host_id: int) -> dict[str, int]:
    """SR-IOV VFs held by the host's VMs, by host interface (physical function) name."""
    cur.execute("SELECT i.attach_name, count(*) FROM machine_interfaces i JOIN machines m ON m.id = i.machine_id"
                " WHERE m.host_id = %s AND i.attach_type = 'sriov' GROUP BY i.attach_name", (host_id,))
    return dict(cur.fetchall())
