"""Machines: every machine is a VM on a VM host, with its disks and NICs.

Discovery keeps the rows of a host's tracked project in step with what the
host reports (`sync_discovered_thd`); composing (a later issue) adds rows with
origin 'composed'.  Memory is stored in bytes; the API shows MiB.
"""

from __future__ import annotations

import datetime

import attrs

from common.models import DiscoveredVM, VMDisk, VMInterface
from common.tls import new_system_id
from region.db.errors import NotFound


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
    disks: list[VMDisk] = attrs.field(factory=list)
    interfaces: list[VMInterface] = attrs.field(factory=list)


@attrs.frozen
class SyncResult:
    added: list[str]
    updated: list[str]
    removed: list[str]


_COLUMNS = (
    "id, system_id, hostname, host_id, project, instance_name, origin, dynamic, status, power_state,"
    " architecture, cpu_count, pinned_cores, memory, hugepages_backed, numa_nodes, tags, zone_id,"
    " pool_id, owner_id, created"
)


def _children_thd(cur, ids: list[int]) -> tuple[dict, dict]:
    cur.execute("SELECT machine_id, name, size, storage_pool FROM machine_disks"
                " WHERE machine_id = ANY(%s) ORDER BY id", (ids,))
    disks: dict[int, list[VMDisk]] = {}
    for machine_id, *row in cur.fetchall():
        disks.setdefault(machine_id, []).append(VMDisk(*row))
    cur.execute("SELECT machine_id, name, mac, attach_type, attach_name, vid, boot FROM machine_interfaces"
                " WHERE machine_id = ANY(%s) ORDER BY id", (ids,))
    nics: dict[int, list[VMInterface]] = {}
    for machine_id, *row in cur.fetchall():
        nics.setdefault(machine_id, []).append(VMInterface(*row))
    return disks, nics


def _machines(cur, where: str, args: tuple) -> list[Machine]:
    cur.execute(f"SELECT {_COLUMNS} FROM machines {where} ORDER BY id", args)
    rows = cur.fetchall()
    disks, nics = _children_thd(cur, [r[0] for r in rows])
    return [Machine(*r, disks=disks.get(r[0], []), interfaces=nics.get(r[0], [])) for r in rows]


def list_thd(cur) -> list[Machine]:
    return _machines(cur, "", ())


def list_for_host_thd(cur, host_id: int) -> list[Machine]:
    return _machines(cur, "WHERE host_id = %s", (host_id,))


def get_thd(cur, system_id: str) -> Machine:
    found = _machines(cur, "WHERE system_id = %s", (system_id,))
    if not found:
        raise NotFound("Machine")
    return found[0]


def delete_thd(cur, machine_id: int) -> None:
    cur.execute("DELETE FROM machines WHERE id = %s", (machine_id,))


def _free_hostname_thd(cur, wanted: str, host_name: str) -> str:
    """The instance name when free, else '<instance>-<host>', else with a random suffix."""
    for candidate in (wanted, f"{wanted}-{host_name}"[:255]):
        cur.execute("SELECT 1 FROM machines WHERE hostname = %s", (candidate,))
        if cur.fetchone() is None:
            return candidate
    return f"{wanted[:240]}-{new_system_id()}"


def _new_system_id_thd(cur) -> str:
    while True:
        system_id = new_system_id()
        cur.execute("SELECT 1 FROM machines WHERE system_id = %s", (system_id,))
        if cur.fetchone() is None:
            return system_id


def _replace_children_thd(cur, machine_id: int, vm: DiscoveredVM) -> None:
    cur.execute("DELETE FROM machine_disks WHERE machine_id = %s", (machine_id,))
    cur.execute("DELETE FROM machine_interfaces WHERE machine_id = %s", (machine_id,))
    for disk in vm.disks:
        cur.execute("INSERT INTO machine_disks (machine_id, name, size, storage_pool) VALUES (%s, %s, %s, %s)",
                    (machine_id, disk.name, disk.size, disk.pool))
    for nic in vm.interfaces:
        cur.execute("INSERT INTO machine_interfaces (machine_id, name, mac, attach_type, attach_name, vid, boot)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s)",
                    (machine_id, nic.name, nic.mac, nic.attach_type, nic.attach_name, nic.vid, nic.boot))


def sync_discovered_thd(cur, host, vms: list[DiscoveredVM]) -> SyncResult:
    """Make the machines of `host`'s tracked project match `vms`.

    New VMs become machines (origin 'discovered', the host's zone, pool and
    tags); known ones get their live facts updated; records of VMs that are
    gone, or of a project the host no longer tracks, are removed (nothing is
    sent to the host).
    """
    tracked = [vm for vm in vms if vm.project == host.project and vm.location in (None, host.name)]
    cur.execute("SELECT id, project, instance_name FROM machines WHERE host_id = %s", (host.id,))
    known = {(project, name): machine_id for machine_id, project, name in cur.fetchall()}
    added, updated = [], []
    for vm in tracked:
        facts = (vm.power_state, vm.architecture, vm.cores, vm.pinned_cores, vm.memory, vm.hugepages_backed)
        machine_id = known.pop((vm.project, vm.instance_name), None)
        if machine_id is None:
            cur.execute(
                "INSERT INTO machines (system_id, hostname, host_id, project, instance_name, origin,"
                " power_state, architecture, cpu_count, pinned_cores, memory, hugepages_backed, tags,"
                " zone_id, pool_id) VALUES (%s, %s, %s, %s, %s, 'discovered', %s, %s, %s, %s, %s, %s, %s,"
                " %s, %s) RETURNING id",
                (_new_system_id_thd(cur), _free_hostname_thd(cur, vm.instance_name, host.name), host.id,
                 host.project, vm.instance_name, *facts, list(host.tags), host.zone_id, host.pool_id),
            )
            machine_id = cur.fetchone()[0]
            added.append(vm.instance_name)
        else:
            cur.execute(
                "UPDATE machines SET power_state = %s, architecture = %s, cpu_count = %s, pinned_cores = %s,"
                " memory = %s, hugepages_backed = %s, updated = now() WHERE id = %s",
                (*facts, machine_id),
            )
            updated.append(vm.instance_name)
        _replace_children_thd(cur, machine_id, vm)
    for machine_id in known.values():
        delete_thd(cur, machine_id)
    return SyncResult(added=added, updated=updated, removed=sorted(name for _, name in known))
