"""Discovery's side of the machine rows: a host's tracked project kept in step with the VMs
the host reports (new ones imported, known ones given their live facts, gone ones removed)."""

from __future__ import annotations

import attrs

from common.models import DiscoveredVM, VMDisk, VMInterface
from common.tls import new_system_id
from region.db.machines import COMPOSE_GRACE_SECONDS, delete_thd
from region.db.racks import REGION_STALE_AFTER


@attrs.frozen
class SyncResult:
    added: list[str]
    updated: list[str]
    removed: list[str]
    abandoned: list[str] = attrs.field(factory=list)  # composes whose region died before the VM existed


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


def _insert_disk_thd(cur, machine_id: int, disk: VMDisk) -> None:
    cur.execute("INSERT INTO machine_disks (machine_id, name, size, storage_pool) VALUES (%s, %s, %s, %s)",
                (machine_id, disk.name, disk.size, disk.pool))


def _insert_nic_thd(cur, machine_id: int, nic: VMInterface) -> None:
    cur.execute("INSERT INTO machine_interfaces (machine_id, name, mac, attach_type, attach_name, vid, boot)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (machine_id, nic.name, nic.mac, nic.attach_type, nic.attach_name, nic.vid, nic.boot))


def _refresh_children_thd(cur, machine_id: int, vm: DiscoveredVM) -> bool:
    """Live facts of a known VM's disks and NICs, keeping what the region decided (NIC and disk
    ids, static IPs and attachments survive a refresh); whether any row changed.  A row whose
    facts are unchanged is not written: its id is what clients address (`blockdevices/{id}/`)
    and its version what the machine JSON cache is keyed on."""
    changed = 0
    cur.execute("SELECT name FROM machine_interfaces WHERE machine_id = %s", (machine_id,))
    known_nics = {r[0] for r in cur.fetchall()}
    for nic in vm.interfaces:
        if nic.name in known_nics:
            cur.execute("UPDATE machine_interfaces SET mac = %s, vid = %s WHERE machine_id = %s AND name = %s"
                        " AND (mac, vid) IS DISTINCT FROM (%s, %s)",
                        (nic.mac, nic.vid, machine_id, nic.name, nic.mac, nic.vid))
            changed += cur.rowcount
        else:
            _insert_nic_thd(cur, machine_id, nic)
            changed += 1
    cur.execute("DELETE FROM machine_interfaces WHERE machine_id = %s AND NOT (name = ANY(%s))",
                (machine_id, [n.name for n in vm.interfaces]))
    changed += cur.rowcount
    # Not INSERT .. ON CONFLICT: it would draw a disk id from the sequence at every refresh.
    cur.execute("SELECT name, size, storage_pool FROM machine_disks WHERE machine_id = %s", (machine_id,))
    known_disks = {name: (size, pool) for name, size, pool in cur.fetchall()}
    for disk in vm.disks:
        known = known_disks.get(disk.name)
        if known is None:
            _insert_disk_thd(cur, machine_id, disk)
        elif known != (disk.size, disk.pool):
            cur.execute("UPDATE machine_disks SET size = %s, storage_pool = %s WHERE machine_id = %s AND name = %s",
                        (disk.size, disk.pool, machine_id, disk.name))
        else:
            continue
        changed += 1
    cur.execute("DELETE FROM machine_disks WHERE machine_id = %s AND NOT (name = ANY(%s))",
                (machine_id, [d.name for d in vm.disks]))
    return bool(changed + cur.rowcount)


def sync_discovered_thd(cur, host, vms: list[DiscoveredVM]) -> SyncResult:
    """Make the machines of `host`'s tracked project match `vms`.

    New VMs become machines (origin 'discovered', the host's zone, pool and
    tags); known ones get their live facts updated; records of VMs that are
    gone, or of a project the host no longer tracks, are removed (nothing is
    sent to the host).
    """
    tracked = [vm for vm in vms if vm.project == host.project and vm.location in (None, host.name)]
    # A VM still being composed may not be on the host yet: keep its record while
    # the region composing it is alive (and not for ever).  A dead region's
    # reservation is settled now: adopted if its VM exists, else dropped.  A deploy or
    # release rebuilds the instance (deleted, then created again): its record stays.
    cur.execute("SELECT m.id, m.project, m.instance_name, m.status = 'composing',"
                " m.created > now() - make_interval(secs => %s)"
                " AND EXISTS (SELECT 1 FROM region_processes r WHERE r.id = m.composing_region"
                "             AND r.heartbeat > now() - %s),"
                " m.status IN ('deploying', 'releasing')"
                " FROM machines m WHERE m.host_id = %s",
                (COMPOSE_GRACE_SECONDS, REGION_STALE_AFTER, host.id))
    rows = cur.fetchall()
    known = {(project, name): machine_id for machine_id, project, name, _, _, _ in rows}
    composing = {name for _, _, name, is_composing, _, _ in rows if is_composing}
    in_flight = {machine_id for machine_id, _, _, is_composing, alive, rebuilding in rows
                 if (is_composing and alive) or rebuilding}
    added, updated = [], []
    for vm in tracked:
        facts = (vm.power_state, vm.architecture, vm.cores, vm.pinned_cores, vm.memory, vm.hugepages_backed)
        machine_id = known.pop((vm.project, vm.instance_name), None)
        if machine_id is None:
            cur.execute(
                "INSERT INTO machines (system_id, hostname, host_id, project, instance_name, origin,"
                " power_state, architecture, cpu_count, pinned_cores, memory, hugepages_backed, tags,"
                " zone_id, pool_id, instance_type) VALUES (%s, %s, %s, %s, %s, 'discovered', %s, %s, %s, %s,"
                " %s, %s, %s, %s, %s, %s) RETURNING id",
                (_new_system_id_thd(cur), _free_hostname_thd(cur, vm.instance_name, host.name), host.id,
                 host.project, vm.instance_name, *facts, list(host.tags), host.zone_id, host.pool_id,
                 vm.instance_type),
            )
            machine_id = cur.fetchone()[0]
            for disk in vm.disks:
                _insert_disk_thd(cur, machine_id, disk)
            for nic in vm.interfaces:
                _insert_nic_thd(cur, machine_id, nic)
            added.append(vm.instance_name)
        else:
            children_changed = _refresh_children_thd(cur, machine_id, vm)
            # Written only when something changed (`updated` is what the UI's live updates watch).
            cur.execute(
                "UPDATE machines SET power_state = %s, architecture = %s, cpu_count = %s, pinned_cores = %s,"
                " memory = %s, hugepages_backed = %s, instance_type = %s, updated = now(),"
                " status = CASE WHEN status = 'composing' THEN 'ready' ELSE status END WHERE id = %s"
                " AND (%s OR status = 'composing' OR (power_state, architecture, cpu_count, pinned_cores, memory,"
                " hugepages_backed, instance_type) IS DISTINCT FROM (%s, %s, %s, %s::integer[], %s, %s, %s))",
                (*facts, vm.instance_type, machine_id, children_changed, *facts, vm.instance_type),
            )
            updated.append(vm.instance_name)
    gone = {key: machine_id for key, machine_id in known.items() if machine_id not in in_flight}
    for machine_id in gone.values():
        delete_thd(cur, machine_id)
    removed = sorted(name for _, name in gone)
    return SyncResult(added=added, updated=updated, removed=removed,
                      abandoned=[name for name in removed if name in composing])
