"""A VM host's capacity and current VMs as placement sees them (compose, allocate, views)."""

from __future__ import annotations

from region import placement
from region.db import host_load, hosts, machines
from region.services.compose_request import StorageAsk


def host_capacity(host: hosts.VMHost, numa_nodes) -> placement.HostCapacity:
    """What the host may give, from its recorded discovery (LXD has one hugepage size)."""
    numa = [placement.NumaCapacity(n.index, tuple(n.cores), n.memory,
                                   n.hugepages[0].page_size if n.hugepages else 0,
                                   n.hugepages[0].total if n.hugepages else 0)
            for n in numa_nodes]
    return placement.HostCapacity(
        name=host.name, cores=host.cores, memory=host.memory, cpu_ratio=host.cpu_over_commit_ratio,
        memory_ratio=host.memory_over_commit_ratio, numa=tuple(numa),
        pools=tuple(placement.PoolCapacity(p.name, p.total, p.used) for p in host.storage_pools),
        default_pool=host.default_storage_pool)


def allocation_of(m: machines.Machine) -> placement.Allocation:
    return placement.Allocation(
        cores=m.cpu_count, memory=m.memory, pinned=tuple(m.pinned_cores), hugepages_backed=m.hugepages_backed,
        numa_nodes=tuple(m.numa_nodes), disks=tuple(placement.DiskAllocation(d.pool, d.size) for d in m.disks))


def capacity_thd(cur, host: hosts.VMHost) -> tuple[placement.HostCapacity, list[placement.Allocation]]:
    """The host's capacity and every VM recorded on it (reservations included)."""
    return capacity_of(host, host_load.host_load_thd(cur, host.id))


def capacity_of(host: hosts.VMHost, load: host_load.HostLoad
                ) -> tuple[placement.HostCapacity, list[placement.Allocation]]:
    """`capacity_thd` from a load already read."""
    return host_capacity(host, load.numa_nodes), [_allocation_of_load(v) for v in load.vms]


def _allocation_of_load(v: host_load.VMLoad) -> placement.Allocation:
    return placement.Allocation(
        cores=v.cores, memory=v.memory, pinned=tuple(v.pinned), hugepages_backed=v.hugepages_backed,
        numa_nodes=tuple(v.numa_nodes), disks=tuple(placement.DiskAllocation(pool, size) for pool, size in v.disks))


def disk_requests(storage: tuple[StorageAsk, ...], host: hosts.VMHost) -> tuple[placement.DiskRequest, ...]:
    # As in MAAS, a disk's tags choose a pool only when one names an existing pool.
    pool_names = [p.name for p in host.storage_pools]
    return tuple(placement.DiskRequest(s.size, next((t for t in s.tags if t in pool_names), None))
                 for s in storage)
