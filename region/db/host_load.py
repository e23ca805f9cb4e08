"""What the VMs on a host hold, as placement needs it: one query, no machine objects.

A compose places over every VM on the host (reservations included); loading each one
whole (machines, disks, NICs, links) costs three queries and grows with the VMs' NICs.
"""

from __future__ import annotations

import attrs


@attrs.frozen
class VMLoad:
    cores: int
    memory: int  # bytes
    pinned: list[int]
    hugepages_backed: bool
    numa_nodes: list[int]
    disks: list[tuple[str | None, int]]  # (storage pool, size in bytes)


def vm_loads_thd(cur, host_id: int) -> list[VMLoad]:
    """The resources each machine recorded on the host holds."""
    cur.execute(
        "SELECT m.cpu_count, m.memory, m.pinned_cores, m.hugepages_backed, m.numa_nodes,"
        " COALESCE((SELECT json_agg(json_build_array(d.storage_pool, d.size) ORDER BY d.id)"
        "           FROM machine_disks d WHERE d.machine_id = m.id), '[]'::json)"
        " FROM machines m WHERE m.host_id = %s ORDER BY m.id", (host_id,))
    return [VMLoad(cores, memory, list(pinned or ()), hugepages, list(numa or ()),
                   [(pool, int(size)) for pool, size in disks])
            for cores, memory, pinned, hugepages, numa, disks in cur.fetchall()]
