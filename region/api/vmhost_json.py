"""The JSON shapes of VM hosts: the MAAS read object and vmyard's `op=resources`."""

from __future__ import annotations

import attrs

from common import sshhostkey
from common.models import HostInterface
from region.api.site import API_PREFIX
from region.api.zone_handlers import pool_json, zone_json
from region.netconstraints import attach_type
from region.db import hosts, machines
from region.services.vmhost_ops import HostResources
from region.services.vmhosts import HostView

MIB = 1024 * 1024


def _usage(host: hosts.VMHost, vms: list[machines.Machine]) -> dict:
    """What the host's VMs in its tracked project hold (cores, MiB, bytes)."""
    tracked = [m for m in vms if m.project == host.project]
    return {
        "cores": sum(m.cpu_count for m in tracked),
        "memory": sum(m.memory for m in tracked) // MIB,
        "local_storage": sum(d.size for m in tracked for d in m.disks),
    }


# How the host is reached and what it says about it: MAAS shows these only through the
# admin-only op=parameters, so only admins get them in the read object.
ADMIN_ONLY_FIELDS = ("power_address", "project", "server_fingerprint", "state_message", "deploy_profiles")


def host_json(view: HostView, collection: str, *, admin: bool) -> dict:
    """The read object, keys as MAAS 2.0 clients read them (memory MiB, storage bytes);
    without `admin`, less the ADMIN_ONLY_FIELDS.

    `used` counts what the VMs of the tracked project were given, and so does a storage
    pool's `used` (as MAAS does: 0 on a fresh host); `available` is `total - used` in both.
    A pool's `lxd_used`/`lxd_available` add what LXD itself reports for its filesystem.
    """
    host, usage = view.host, view.usage
    total = {"cores": host.cores, "memory": host.memory // MIB,
             "local_storage": sum(p.total for p in host.storage_pools)}
    used = {"cores": usage.cores, "memory": usage.memory // MIB, "local_storage": usage.storage}
    shown = {
        "id": host.id,
        "name": host.name,
        "type": host.type,
        "version": host.version,
        "state": host.state,
        "state_message": host.state_message,
        "power_address": host.power_address,
        "project": host.project,
        # virsh: the pinned SSH host key shows as its fingerprint, as ssh-keygen -l prints it
        "server_fingerprint": sshhostkey.display(host.server_fingerprint) if host.type == "virsh"
        else host.server_fingerprint,
        "last_refresh": host.last_refresh.isoformat() if host.last_refresh else None,
        "tags": list(host.tags),
        "architectures": list(host.architectures),
        "capabilities": list(host.capabilities),
        "cpu_speed": host.cpu_speed,
        "total": total,
        "used": used,
        "available": {k: total[k] - used[k] for k in total},
        "images": [{"id": i.resource_id, "name": i.name, "architecture": i.architecture,
                    "fingerprint": i.lxd_fingerprint, "copying": i.copying} for i in view.images],
        "zone": zone_json(view.zone),
        "pool": pool_json(view.pool),
        "cpu_over_commit_ratio": float(host.cpu_over_commit_ratio),
        "memory_over_commit_ratio": float(host.memory_over_commit_ratio),
        "default_macvlan_mode": host.default_macvlan_mode,
        "default_storage_pool": host.default_storage_pool,
        "deploy_profiles": list(host.deploy_profiles),
        "storage_pools": [_pool_json(p, host, usage.pools.get(p.name, 0)) for p in host.storage_pools],
        "host": {"system_id": None, "__incomplete__": True},
        "resource_uri": f"{API_PREFIX}{collection}/{host.id}/",
    }
    return shown if admin else {k: v for k, v in shown.items() if k not in ADMIN_ONLY_FIELDS}


def _pool_json(p: hosts.HostStoragePool, host: hosts.VMHost, used: int) -> dict:
    # MAAS's pool id is the hypervisor's pool id, a string (LXD: the pool name);
    # Terraform's client decodes it as one.
    return {"id": p.name, "name": p.name, "type": p.type, "path": p.path, "total": p.total,
            "used": used, "available": p.total - used, "default": p.name == host.default_storage_pool,
            "lxd_used": p.used, "lxd_available": p.available}


def resources_json(r: HostResources) -> dict:
    """Per NUMA node: cores, memory (general and hugepages), VMs and NICs with their VFs.

    Usage comes from the same accounting compose places with (`region.placement`),
    so what this shows free is exactly what a compose may take.  Memory in MiB.  Other
    users' machines are counted but not listed.
    """
    host, vms, interfaces, vfs_used = r.host, r.visible_vms, r.interfaces, r.vfs_used
    nodes = []
    for node, cap in zip(r.numa, r.capacity.numa):
        used = r.usage[node.index]
        on_node = [m for m in vms if node.index in m.numa_nodes or set(m.pinned_cores) & set(node.cores)]
        general_total = node.memory - cap.hugepage_bytes
        nodes.append({
            "index": node.index,
            "cores": {"total": len(node.cores), "ids": node.cores, "allocated": round(used.cores, 2),
                      "pinned": sorted(used.pinned), "free": [c for c in node.cores if c not in used.pinned],
                      "over_commit_ratio": float(host.cpu_over_commit_ratio)},
            "memory": {"total": node.memory // MIB, "allocated": int(used.memory) // MIB,
                       "general": {"total": general_total // MIB, "allocated": int(used.memory) // MIB,
                                   "free": int(general_total * host.memory_over_commit_ratio - used.memory) // MIB}},
            "hugepages": [{**attrs.asdict(h), "allocated": int(used.hugepages),
                           "available": h.page_size * h.total - int(used.hugepages)} for h in node.hugepages],
            "vms": [{"system_id": m.system_id, "hostname": m.hostname, "pinned_cores": m.pinned_cores}
                    for m in on_node],
            "interfaces": [_nic(i, vfs_used) for i in interfaces if i.numa_node == node.index],
        })
    usage_total = _usage(host, r.vms)
    return {
        "id": host.id,
        "name": host.name,
        "cores": {"total": host.cores, "allocated": usage_total["cores"],
                  "over_commit_ratio": float(host.cpu_over_commit_ratio),
                  "available": host.cores * host.cpu_over_commit_ratio - usage_total["cores"]},
        "memory": {"total": host.memory // MIB, "allocated": usage_total["memory"],
                   "over_commit_ratio": float(host.memory_over_commit_ratio)},
        "numa": nodes,
        "interfaces": [_nic(i, vfs_used) for i in interfaces],
        "vms": [{"system_id": m.system_id, "hostname": m.hostname, "project": m.project, "status": m.status,
                 "cores": m.cpu_count, "pinned_cores": m.pinned_cores, "memory": m.memory // MIB,
                 "hugepages_backed": m.hugepages_backed, "numa_nodes": m.numa_nodes, "power_state": m.power_state}
                for m in vms],
    }


def _nic(i: HostInterface, vfs_used: dict[str, int]) -> dict:
    used = vfs_used.get(i.name, 0)
    return {**attrs.asdict(i), "attach_type": attach_type(i),
            "virtual_functions": {"total": i.sriov_max_vfs, "allocated": used, "free": i.sriov_max_vfs - used}}
