"""Who holds a machine: the allocation columns of `machines` (0007_allocation.sql).

`machines.Machine` carries the VM's facts; this module reads and writes the
allocation bookkeeping beside them (owner, agent name, owner data, the
deployed series) and the status changes of allocate/release/deploy.  Every
state change is a conditional UPDATE, so two regions racing for one machine
cannot both win.
"""

from __future__ import annotations

import json

import attrs

from region.db import machines


@attrs.frozen
class Allocation:
    agent_name: str = ""
    owner_data: dict[str, str] = attrs.field(factory=dict)
    distro_series: str = ""


def extras_thd(cur, machine_ids: list[int]) -> dict[int, Allocation]:
    cur.execute("SELECT id, agent_name, owner_data, distro_series FROM machines WHERE id = ANY(%s)",
                (list(machine_ids),))
    return {r[0]: Allocation(r[1], dict(r[2] or {}), r[3]) for r in cur.fetchall()}


def available_thd(cur) -> list[machines.Machine]:
    """Machines allocate may hand out: Ready and owned by nobody."""
    return [m for m in machines.list_thd(cur) if m.status == "ready" and m.owner_id is None]


def claim_thd(cur, machine_id: int, owner_id: int, agent_name: str, *, owned_by_caller: bool = False) -> bool:
    """Ready → Allocated for `owner_id`; False if someone else got there first.
    `owned_by_caller`: the machine was composed for this caller (already owned by them)."""
    cur.execute(
        "UPDATE machines SET status = 'allocated', owner_id = %s, agent_name = %s, updated = now()"
        " WHERE id = %s AND status = 'ready' AND " + ("owner_id = %s" if owned_by_caller else "owner_id IS NULL"),
        (owner_id, agent_name, machine_id, *((owner_id,) if owned_by_caller else ())))
    return cur.rowcount == 1


def release_thd(cur, machine_id: int) -> bool:
    """Back to Ready with every trace of the allocation cleared (as MAAS clears owner data)."""
    cur.execute(
        "UPDATE machines SET status = 'ready', owner_id = NULL, agent_name = '', owner_data = '{}'::jsonb,"
        " distro_series = '', updated = now() WHERE id = %s"
        " AND status IN ('allocated', 'deploying', 'deployed', 'failed_deployment', 'releasing')",
        (machine_id,))
    return cur.rowcount == 1


def update_owner_data_thd(cur, machine_id: int, changes: dict[str, str]) -> None:
    """Set keys; an empty value deletes the key (MAAS)."""
    cur.execute("SELECT owner_data FROM machines WHERE id = %s FOR UPDATE", (machine_id,))
    data = dict(cur.fetchone()[0] or {})
    for key, value in changes.items():
        if value == "":
            data.pop(key, None)
        else:
            data[key] = value
    cur.execute("UPDATE machines SET owner_data = %s::jsonb, updated = now() WHERE id = %s",
                (json.dumps(data), machine_id))
