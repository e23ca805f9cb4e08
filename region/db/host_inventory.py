"""What discovery found on a VM host: storage pools, NUMA nodes, interfaces, projects.

`apply_discovery_thd` writes one DiscoveredHost in the caller's transaction;
readers return the attrs values of common.models so the API and the rack see
the same shapes.
"""

from __future__ import annotations

import json

import attrs

from common.models import DiscoveredHost, HostInterface, HugepageInfo, NumaNode, Project


@attrs.frozen
class PoolChanges:
    added: list[str]
    removed: list[str]


def _sync_storage_pools_thd(cur, host_id: int, discovered: DiscoveredHost) -> PoolChanges:
    """Pools are matched by name: updated in place (ids stay stable), added, or removed."""
    cur.execute("SELECT name FROM vm_host_storage_pools WHERE host_id = %s", (host_id,))
    before = {r[0] for r in cur.fetchall()}
    for pool in discovered.storage_pools:
        cur.execute(
            "INSERT INTO vm_host_storage_pools (host_id, name, type, path, total, used)"
            " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (host_id, name) DO UPDATE"
            " SET type = EXCLUDED.type, path = EXCLUDED.path, total = EXCLUDED.total, used = EXCLUDED.used",
            (host_id, pool.name, pool.type, pool.path, pool.total, pool.used),
        )
    now = {p.name for p in discovered.storage_pools}
    gone = sorted(before - now)
    cur.execute("DELETE FROM vm_host_storage_pools WHERE host_id = %s AND NOT (name = ANY(%s))",
                (host_id, sorted(now)))
    # Keep the user's default pool while it exists; otherwise the first discovered one.
    cur.execute("SELECT default_storage_pool FROM vm_hosts WHERE id = %s", (host_id,))
    default = cur.fetchone()[0]
    if (default is None or default not in now) and discovered.storage_pools:
        cur.execute("UPDATE vm_hosts SET default_storage_pool = %s WHERE id = %s",
                    (discovered.storage_pools[0].name, host_id))
    return PoolChanges(added=sorted(now - before), removed=gone)


def _replace_thd(cur, table: str, host_id: int, columns: tuple[str, ...], rows: list[tuple]) -> None:
    cur.execute(f"DELETE FROM {table} WHERE host_id = %s", (host_id,))
    if rows:
        placeholders = ", ".join(["%s"] * (len(columns) + 1))
        cur.executemany(f"INSERT INTO {table} (host_id, {', '.join(columns)}) VALUES ({placeholders})",
                        [(host_id, *row) for row in rows])


def _sync_interfaces_thd(cur, host_id: int, discovered: DiscoveredHost) -> None:
    """Matched by name, so an interface keeps its id, its VLAN link and its tags."""
    for i in discovered.interfaces:
        cur.execute(
            "INSERT INTO vm_host_interfaces (host_id, name, type, mac, numa_node, sriov_max_vfs,"
            " sriov_current_vfs, link_speed) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (host_id, name) DO UPDATE SET type = EXCLUDED.type, mac = EXCLUDED.mac,"
            " numa_node = EXCLUDED.numa_node, sriov_max_vfs = EXCLUDED.sriov_max_vfs,"
            " sriov_current_vfs = EXCLUDED.sriov_current_vfs, link_speed = EXCLUDED.link_speed",
            (host_id, i.name, i.type, i.mac, i.numa_node, i.sriov_max_vfs, i.sriov_current_vfs, i.link_speed),
        )
    cur.execute("DELETE FROM vm_host_interfaces WHERE host_id = %s AND NOT (name = ANY(%s))",
                (host_id, [i.name for i in discovered.interfaces]))


def apply_discovery_thd(cur, host_id: int, discovered: DiscoveredHost) -> PoolChanges:
    changes = _sync_storage_pools_thd(cur, host_id, discovered)
    _replace_thd(cur, "vm_host_numa_nodes", host_id, ("index", "cores", "memory", "hugepages"), [
        (n.index, n.cores, n.memory, json.dumps([attrs.asdict(h) for h in n.hugepages]))
        for n in discovered.numa_nodes
    ])
    _sync_interfaces_thd(cur, host_id, discovered)
    _replace_thd(cur, "vm_host_projects", host_id, ("name", "description"),
                 [(p.name, p.description) for p in discovered.projects])
    return changes


def numa_nodes_thd(cur, host_id: int) -> list[NumaNode]:
    cur.execute("SELECT index, cores, memory, hugepages FROM vm_host_numa_nodes WHERE host_id = %s"
                " ORDER BY index", (host_id,))
    return [numa_node(*row) for row in cur.fetchall()]


def numa_node(index: int, cores: list[int], memory: int, hugepages: list[dict]) -> NumaNode:
    """A NumaNode from a vm_host_numa_nodes row (index, cores, memory, hugepages)."""
    return NumaNode(index=index, cores=list(cores), memory=memory, hugepages=[HugepageInfo(**h) for h in hugepages])


def interfaces_thd(cur, host_id: int) -> list[HostInterface]:
    cur.execute("SELECT name, type, mac, numa_node, sriov_max_vfs, sriov_current_vfs, link_speed"
                " FROM vm_host_interfaces WHERE host_id = %s ORDER BY name", (host_id,))
    return [HostInterface(*row) for row in cur.fetchall()]


def projects_thd(cur, host_id: int) -> list[Project]:
    cur.execute("SELECT name, description FROM vm_host_projects WHERE host_id = %s ORDER BY name", (host_id,))
    return [Project(*row) for row in cur.fetchall()]
