"""What a host has and what the VMs on it hold, as placement needs it: one query, no machine objects.

A compose places over every VM on the host (reservations included); loading each one
whole (machines, disks, NICs, links) costs three queries and grows with the VMs' NICs.
"""

from __future__ import annotations

import attrs

from common.models import NumaNode
from region.db.host_inventory import numa_node
from region.db.prepared import Prepared


@attrs.frozen
class VMLoad:
    cores: int
    memory: int  # bytes
    pinned: list[int]
    hugepages_backed: bool
    numa_nodes: list[int]
    disks: list[tuple[str | None, int]]  # (storage pool, size in bytes)


@attrs.frozen
class HostLoad:
    numa_nodes: list[NumaNode]  # the host's, as discovery recorded them
    vms: list[VMLoad]  # every machine recorded on the host, reservations included


# Two columns over a `vm_hosts h` row: its NUMA nodes, and what each machine on it holds.
LOAD_COLUMNS = (
    "COALESCE((SELECT json_agg(json_build_array(n.index, n.cores, n.memory, n.hugepages) ORDER BY n.index)"
    "          FROM vm_host_numa_nodes n WHERE n.host_id = h.id), '[]'::json),"
    " COALESCE((SELECT json_agg(json_build_array(m.cpu_count, m.memory, m.pinned_cores, m.hugepages_backed,"
    "                                            m.numa_nodes, COALESCE((SELECT json_agg("
    "                     json_build_array(d.storage_pool, d.size) ORDER BY d.id)"
    "                     FROM machine_disks d WHERE d.machine_id = m.id), '[]'::json)) ORDER BY m.id)"
    "           FROM machines m WHERE m.host_id = h.id), '[]'::json)")
_HOST_LOAD = Prepared("host_load", f"SELECT {LOAD_COLUMNS} FROM vm_hosts h WHERE h.id = %s")


def host_load_thd(cur, host_id: int) -> HostLoad:
    """The host's NUMA nodes and the resources each machine recorded on it holds (one statement)."""
    cur.execute(_HOST_LOAD, (host_id,))
    row = cur.fetchone()
    return load_of(*row) if row else HostLoad([], [])


def load_of(numa: list, vms: list) -> HostLoad:
    """`LOAD_COLUMNS` as read."""
    return HostLoad(
        [numa_node(*row) for row in numa],
        [VMLoad(cores, memory, list(pinned or ()), hugepages, list(numa_nodes or ()),
                [(pool, int(size)) for pool, size in disks])
         for cores, memory, pinned, hugepages, numa_nodes, disks in vms])
