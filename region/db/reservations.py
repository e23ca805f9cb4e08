"""A compose's record: the machine inserted as 'composing' with its disks and NICs (so it
counts at once), and once its VM exists, marked 'ready' with what the host made of it.

`reserve_thd` runs inside a placement transaction in a thread.  The reactor's placement
(`region.services.compose`) sends `insert_statement` and COMMIT in one query string and reads the
machine back with `reserved_statement` right after: the insert's own result would be lost
behind the COMMIT's.
"""

from __future__ import annotations

from typing import Any

import attrs

from common.models import DiscoveredVM
from common.tls import new_system_id
from region.db.errors import FieldError, NotFound
from region.db.machines import (COLUMNS, NIC_COLUMNS, Machine, MachineNic, NewMachine, disks_from, disks_json,
                                hostname_taken_message, hostname_taken_thd)
from region.db.pool import Statement
from region.db.prepared import Prepared

RESERVE_ATTEMPTS = 8  # fresh random names after a clash; six random characters make even a second rare


def _insert_sql(on_clash: str) -> str:
    return (
        "WITH m AS (INSERT INTO machines (system_id, hostname, host_id, project, instance_name, origin, dynamic,"
        " status, power_state, architecture, cpu_count, pinned_cores, memory, hugepages_backed, numa_nodes, tags,"
        " zone_id, pool_id, owner_id, composing_region, instance_type) VALUES (%s, %s, %s, %s, %s, 'composed',"
        " %s, 'composing', 'off', %s, %s, %s, %s, %s, %s, %s,"
        " COALESCE(%s, (SELECT id FROM zones WHERE is_default)), %s, %s, %s, %s)"
        f"{on_clash} RETURNING {COLUMNS}),"
        " d AS (INSERT INTO machine_disks (machine_id, name, size, storage_pool)"
        "       SELECT m.id, v.* FROM m, unnest(%s::text[], %s::bigint[], %s::text[]) AS v"
        "       RETURNING id, name, size, storage_pool)"
        f" SELECT m.*, {disks_json('d')} FROM m")


_RESERVE = Prepared("reserve_machine", _insert_sql(" ON CONFLICT DO NOTHING"))
# A clash (of the random system id or hostname) fails the transaction instead: the reactor's
# placement cannot see an empty result behind its COMMIT, and starts again with fresh names.
_INSERT = Prepared("insert_machine", _insert_sql(""))
_RESERVED = Prepared(
    "reserved_machine",
    f"SELECT {COLUMNS}, {disks_json()} FROM machines m WHERE system_id = %s")


def _insert_args(new: NewMachine, system_id: str, hostname: str) -> tuple:
    return (system_id, hostname, new.host_id, new.project, hostname, new.dynamic,
            new.architecture, new.cpu_count, new.pinned_cores, new.memory, new.hugepages_backed, new.numa_nodes,
            new.tags, new.zone_id, new.pool_id, new.owner_id, new.composing_region, new.instance_type,
            [d.name for d in new.disks], [d.size for d in new.disks], [d.pool for d in new.disks])


def _reserved(row: tuple) -> Machine:
    *row, disk_rows = row
    return Machine(*row, disks=disks_from(disk_rows), interfaces=[])


def insert_statement(new: NewMachine, system_id: str) -> Statement[None]:
    """The machine (NICs aside) and its disks, named `system_id` and (unless `new` names it)
    `vm-<random>`; a clash is a psycopg2.errors.UniqueViolation."""
    if new.nics:
        raise ValueError("insert_statement records no NICs: use reserve_thd")
    return Statement(_INSERT, _insert_args(new, system_id, new.hostname or f"vm-{new_system_id()}"))


def reserved_statement(system_id: str) -> Statement[Machine | None]:
    """The machine with its disks as recorded (None: there is none)."""
    return Statement(_RESERVED, (system_id,), lambda rows: _reserved(rows[0]) if rows else None)


def reserve_thd(cur, new: NewMachine) -> tuple[Machine, dict[str, int]]:
    """Insert the machine as 'composing' so it counts at once; returns it and its NIC ids by name.

    The machine and its disks are one statement, the NICs another (arrays in, rows returned): nothing
    is read back.  The random system id (and the hostname `vm-<random>` when `new.hostname` is None) is not looked
    up first: a clash inserts nothing and fresh ones are drawn.  A given hostname that clashes
    with a machine's hostname, or with an instance of that name in the host's project, is a
    FieldError on "hostname".
    """
    for _ in range(RESERVE_ATTEMPTS):
        hostname = new.hostname or f"vm-{new_system_id()}"
        cur.execute(_RESERVE, _insert_args(new, new_system_id(), hostname))
        row = cur.fetchone()
        if row is not None:
            break
        if new.hostname is not None:
            _check_name_free_thd(cur, new)
    else:
        raise RuntimeError(f"no free system id and hostname after {RESERVE_ATTEMPTS} random draws")
    machine = _reserved(row)
    nics: list[MachineNic] = []
    if new.nics:
        cur.execute("INSERT INTO machine_interfaces (machine_id, name, attach_type, attach_name, vid, boot)"
                    " SELECT %s, name, attach_type, attach_name, vid, n = 1"
                    " FROM unnest(%s::text[], %s::text[], %s::text[], %s::int[]) WITH ORDINALITY"
                    " AS a(name, attach_type, attach_name, vid, n) ORDER BY n"
                    f" RETURNING {NIC_COLUMNS}",
                    (machine.id, [n.name for n in new.nics], [n.attach_type for n in new.nics],
                     [n.attach_name for n in new.nics], [n.vid for n in new.nics]))
        nics = sorted((MachineNic(*r) for r in cur.fetchall()), key=lambda n: n.id)
    return attrs.evolve(machine, interfaces=nics), {nic.name: nic.id for nic in nics}


def _check_name_free_thd(cur, new: NewMachine) -> None:
    """FieldError when the given hostname names a machine, or an instance in the host's project."""
    if hostname_taken_thd(cur, new.hostname):
        raise FieldError("hostname", hostname_taken_message(new.hostname))
    cur.execute("SELECT 1 FROM machines WHERE host_id = %s AND project = %s AND instance_name = %s",
                (new.host_id, new.project, new.hostname))
    if cur.fetchone() is not None:
        raise FieldError("hostname", f"An instance named {new.hostname} is already recorded in project "
                                     f"{new.project} of this VM host.")


_FINISH_COMPOSE = Prepared(
    "finish_compose",
    f"UPDATE machines SET status = 'ready', power_state = %s, updated = now() WHERE id = %s RETURNING {COLUMNS}")


def finish_compose_statements(reserved: Machine, vm: DiscoveredVM) -> list[Statement[Any]]:
    """The VM exists: the statements that record what the host made of `reserved` (MACs, disk
    sizes, power state); the last one's result is the machine, its NICs not read back.

    Only what the host changed is written; the disks are the reserved ones with the sizes reported.
    """
    changes: list[Statement[Any]] = []
    if vm.interfaces:
        changes.append(Statement(
            "UPDATE machine_interfaces i SET mac = v.mac FROM unnest(%s::text[], %s::text[]) AS v(name, mac)"
            " WHERE i.machine_id = %s AND i.name = v.name",
            ([n.name for n in vm.interfaces], [n.mac for n in vm.interfaces], reserved.id)))
    reported = {d.name: d.size for d in vm.disks}
    resized = [(d.name, reported[d.name]) for d in reserved.disks if reported.get(d.name, d.size) != d.size]
    if resized:
        changes.append(Statement(
            "UPDATE machine_disks d SET size = v.size FROM unnest(%s::text[], %s::bigint[]) AS v(name, size)"
            " WHERE d.machine_id = %s AND d.name = v.name",
            ([name for name, _ in resized], [size for _, size in resized], reserved.id)))
    disks = [attrs.evolve(d, size=reported.get(d.name, d.size)) for d in reserved.disks]

    def finished(rows: list[tuple] | None) -> Machine:
        if not rows:
            raise NotFound("Machine")  # deleted while its VM was being made
        return Machine(*rows[0], disks=disks, interfaces=[])

    return [*changes, Statement(_FINISH_COMPOSE, (vm.power_state, reserved.id), finished)]


