"""Where a new VM goes on a host, and whether it fits: pure functions, no I/O.

The rules (vmyard's, stricter than MAAS where MAAS let hosts overfill):

- CPU: the vCPUs of all VMs may reach `cores × cpu_over_commit_ratio`.
- Memory: ordinary VM memory may reach `(memory − hugepage reservations) ×
  memory_over_commit_ratio`.  Hugepage-backed memory comes from the hugepages
  of the NUMA nodes the VM uses and is never overcommitted.
- Pinned cores must exist and belong to no other VM's pinning.
- NUMA: a VM goes on one node when it fits there (the node with the most free
  memory wins, then the lowest index); otherwise it spans the fewest nodes
  that hold it.  Pinned VMs live on the nodes of their cores.
- Storage is never overcommitted: a pool's free space is its total minus the
  larger of what LXD reports used and what VMs were given.

`place()` returns a `Placement` or raises `DoesNotFit` whose message says
what falls short and by how much; `InvalidRequest` is for asks that could
never be met (an unknown pool, a core the host does not have).
"""

from __future__ import annotations

from collections import defaultdict

import attrs

MIB = 1024**2
GIB = 1024**3


@attrs.frozen
class NumaCapacity:
    index: int
    cores: tuple[int, ...]
    memory: int  # bytes, including any hugepage reservation
    hugepage_size: int = 0  # bytes per page; 0: no hugepages on this node
    hugepages_total: int = 0  # pages

    @property
    def hugepage_bytes(self) -> int:
        return self.hugepage_size * self.hugepages_total


@attrs.frozen
class PoolCapacity:
    name: str
    total: int  # bytes
    used: int  # bytes, as the host reports


@attrs.frozen
class HostCapacity:
    name: str
    cores: int
    memory: int  # bytes
    cpu_ratio: float
    memory_ratio: float
    numa: tuple[NumaCapacity, ...] = ()
    pools: tuple[PoolCapacity, ...] = ()
    default_pool: str | None = None


@attrs.frozen
class DiskAllocation:
    pool: str | None
    size: int


@attrs.frozen
class Allocation:
    """What one existing VM holds."""

    cores: int
    memory: int  # bytes
    pinned: tuple[int, ...] = ()
    hugepages_backed: bool = False
    numa_nodes: tuple[int, ...] = ()  # where it was placed (empty: unknown)
    disks: tuple[DiskAllocation, ...] = ()


@attrs.frozen
class DiskRequest:
    size: int  # bytes
    pool: str | None = None  # asked for by name


@attrs.frozen
class Request:
    cores: int
    memory: int  # bytes
    pinned: tuple[int, ...] = ()
    hugepages_backed: bool = False
    disks: tuple[DiskRequest, ...] = ()


@attrs.frozen
class Placement:
    numa_nodes: tuple[int, ...]
    pinned: tuple[int, ...]
    disk_pools: tuple[str, ...]


class InvalidRequest(ValueError):
    """The request names something the host does not have."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class DoesNotFit(Exception):
    """The host lacks room; `shortfalls` says what and by how much."""

    def __init__(self, host: str, shortfalls: list[str]) -> None:
        self.shortfalls = shortfalls
        super().__init__(f"VM host {host} cannot fit this VM: " + "; ".join(shortfalls) + ".")


def human(n: float) -> str:
    """Bytes as GiB/MiB, exact enough to compare."""
    if abs(n) >= GIB and n % (GIB // 4) == 0:
        return f"{n / GIB:g} GiB"
    return f"{n / MIB:.0f} MiB"


def _ratio(r: float) -> str:
    return f"{r:g}"


# -- where existing VMs sit, per NUMA node ---------------------------------------------------

@attrs.frozen
class NodeUsage:
    cores: float = 0.0  # vCPUs attributed to the node
    memory: float = 0.0  # ordinary memory, bytes
    hugepages: float = 0.0  # hugepage-backed memory, bytes
    pinned: frozenset[int] = frozenset()


def node_usage(host: HostCapacity, vms: tuple[Allocation, ...] | list[Allocation]) -> dict[int, NodeUsage]:
    """Attribute each VM to nodes: pinned VMs by their cores, others evenly over their
    recorded nodes; VMs with no known node count only host-wide."""
    cores: dict[int, float] = defaultdict(float)
    memory: dict[int, float] = defaultdict(float)
    huge: dict[int, float] = defaultdict(float)
    pinned: dict[int, set[int]] = defaultdict(set)
    node_of_core = {c: n.index for n in host.numa for c in n.cores}
    for vm in vms:
        if vm.pinned:
            share: dict[int, float] = defaultdict(float)
            for c in vm.pinned:
                if c in node_of_core:
                    share[node_of_core[c]] += 1 / len(vm.pinned)
                    pinned[node_of_core[c]].add(c)
        elif vm.numa_nodes:
            share = {i: 1 / len(vm.numa_nodes) for i in vm.numa_nodes}
        else:
            continue
        for index, weight in share.items():
            cores[index] += vm.cores * weight
            (huge if vm.hugepages_backed else memory)[index] += vm.memory * weight
    return {n.index: NodeUsage(cores[n.index], memory[n.index], huge[n.index], frozenset(pinned[n.index]))
            for n in host.numa}


# -- the checks -----------------------------------------------------------------------------

def _general_memory(host: HostCapacity) -> int:
    return host.memory - sum(n.hugepage_bytes for n in host.numa)


def _host_shortfalls(host: HostCapacity, vms, usage: dict[int, NodeUsage], request: Request) -> list[str]:
    out = []
    cpu_cap = host.cores * host.cpu_ratio
    cpu_used = sum(v.cores for v in vms)
    if cpu_used + request.cores > cpu_cap:
        cpu = (f"needs {request.cores} cores, host has {max(cpu_cap - cpu_used, 0):g} free of "
               f"{host.cores}×{_ratio(host.cpu_ratio)}")
        out.append(f"{cpu} ({_numa_detail(host, usage)})" if host.numa else cpu)
    if request.hugepages_backed and not host.numa:
        out.append(f"needs {human(request.memory)} of hugepages, host reports no NUMA nodes with hugepages")
    if not request.hugepages_backed:
        general = _general_memory(host)
        mem_cap = general * host.memory_ratio
        mem_used = sum(v.memory for v in vms if not v.hugepages_backed)
        if mem_used + request.memory > mem_cap:
            out.append(f"needs {human(request.memory)} memory, host has {human(max(mem_cap - mem_used, 0))} "
                       f"free of {human(general)}×{_ratio(host.memory_ratio)}")
    return out


def _check_pinned(host: HostCapacity, usage: dict[int, NodeUsage], request: Request) -> list[str]:
    known = {c for n in host.numa for c in n.cores} if host.numa else set(range(host.cores))
    missing = sorted(set(request.pinned) - known)
    if missing:
        raise InvalidRequest("pinned_cores", f"VM host {host.name} has no core(s) {_cores(missing)}")
    taken = sorted(set(request.pinned) & {c for u in usage.values() for c in u.pinned})
    return [f"core(s) {_cores(taken)} already pinned to other VMs"] if taken else []


def _cores(cores: list[int]) -> str:
    """Sorted cores as runs, short whatever was asked: [0, 1, 2, 5] -> '0-2,5'."""
    runs: list[list[int]] = []
    for c in cores:
        if runs and c == runs[-1][1] + 1:
            runs[-1][1] = c
        else:
            runs.append([c, c])
    return ",".join(str(low) if low == high else f"{low}-{high}" for low, high in runs)


def _node_free(node: NumaCapacity, used: NodeUsage, host: HostCapacity, hugepages: bool) -> tuple[float, float]:
    """(free vCPUs, free bytes of the memory kind asked for) on one node."""
    cpu = len(node.cores) * host.cpu_ratio - used.cores
    if hugepages:
        return cpu, node.hugepage_bytes - used.hugepages
    return cpu, (node.memory - node.hugepage_bytes) * host.memory_ratio - used.memory


def _round_to_pages(memory: int, page_size: int) -> int:
    return -(-memory // page_size) * page_size if page_size else memory


def _numa_nodes(host: HostCapacity, usage: dict[int, NodeUsage], request: Request) -> tuple[tuple[int, ...], list[str]]:
    if not host.numa:
        return (), []
    if request.pinned:
        nodes = tuple(sorted({n.index for n in host.numa if set(n.cores) & set(request.pinned)}))
        if request.hugepages_backed:
            # Memory follows the pinned cores (as node_usage counts it): each node must hold its share.
            short = []
            for n in host.numa:
                on_node = len(set(n.cores) & set(request.pinned))
                if not on_node:
                    continue
                share = _round_to_pages(-(-request.memory * on_node // len(request.pinned)), n.hugepage_size)
                free = _node_free(n, usage[n.index], host, True)[1]
                if free < share:
                    short.append(f"NUMA node {n.index} needs {human(share)} and has {human(max(free, 0))} free")
            if short:
                return nodes, [f"needs {human(request.memory)} of hugepages on the nodes of its pinned cores: "
                               + ", ".join(short)]
        return nodes, []
    free = {n.index: _node_free(n, usage[n.index], host, request.hugepages_backed) for n in host.numa}
    fitting = [n for n in host.numa
               if free[n.index][0] >= request.cores
               and free[n.index][1] >= _round_to_pages(request.memory, n.hugepage_size)]
    if fitting:
        best = max(fitting, key=lambda n: (free[n.index][1], -n.index))
        return (best.index,), []
    # Span the fewest nodes, most free memory first.  A spanning VM is split evenly
    # (as node_usage counts it), so each chosen node must hold its share of
    # hugepages; ordinary memory and cores need only fit in total.
    order = sorted(host.numa, key=lambda n: (-free[n.index][1], n.index))
    for k in range(2, len(order) + 1):
        chosen = order[:k]
        if request.hugepages_backed:
            share = -(-request.memory // k)
            fits = all(free[n.index][1] >= _round_to_pages(share, n.hugepage_size) for n in chosen)
        else:
            fits = (sum(max(free[n.index][0], 0) for n in chosen) >= request.cores
                    and sum(max(free[n.index][1], 0) for n in chosen) >= request.memory)
        if fits:
            return tuple(sorted(n.index for n in chosen)), []
    if request.hugepages_backed:
        per_node = ", ".join(f"NUMA node {i} has {human(max(free[i][1], 0))} free" for i in sorted(free))
        return (), [f"needs {human(request.memory)} of hugepages; {per_node}"]
    return tuple(sorted(n.index for n in host.numa)), []


def _numa_detail(host: HostCapacity, usage: dict[int, NodeUsage]) -> str:
    parts = []
    for n in host.numa:
        cpu, _ = _node_free(n, usage[n.index], host, False)
        parts.append(f"NUMA node {n.index} has {max(cpu, 0):g} free")
    return "; ".join(parts)


def _pool_free(host: HostCapacity, vms, request_so_far: dict[str, int]) -> dict[str, int]:
    given: dict[str, int] = defaultdict(int)
    for vm in vms:
        for d in vm.disks:
            if d.pool is not None:
                given[d.pool] += d.size
    return {p.name: p.total - max(p.used, given[p.name]) - request_so_far.get(p.name, 0) for p in host.pools}


def _disk_pools(host: HostCapacity, vms, request: Request) -> tuple[tuple[str, ...], list[str]]:
    names = [p.name for p in host.pools]
    chosen: list[str] = []
    placed: dict[str, int] = defaultdict(int)
    shortfalls = []
    for i, disk in enumerate(request.disks):
        free = _pool_free(host, vms, placed)
        if disk.pool is not None:
            if disk.pool not in names:
                raise InvalidRequest("storage", f"VM host {host.name} has no storage pool {disk.pool!r} "
                                                f"(it has: {', '.join(names) or 'none'})")
            pool = disk.pool
        elif host.default_pool in names:
            pool = host.default_pool
        elif names:
            pool = max(names, key=lambda n: (free[n], -names.index(n)))
        else:
            raise InvalidRequest("storage", f"VM host {host.name} has no storage pools")
        if free[pool] < disk.size:
            shortfalls.append(f"disk {i} needs {human(disk.size)} in pool {pool}, which has "
                              f"{human(max(free[pool], 0))} free")
        chosen.append(pool)
        placed[pool] += disk.size
    return tuple(chosen), shortfalls


def place(host: HostCapacity, vms: tuple[Allocation, ...] | list[Allocation], request: Request) -> Placement:
    """Where `request` goes on `host` given the VMs already there; raises DoesNotFit."""
    if request.cores < 1 or request.memory < 1:
        raise InvalidRequest("cores" if request.cores < 1 else "memory", "must be at least 1")
    usage = node_usage(host, vms)
    shortfalls = _host_shortfalls(host, vms, usage, request)
    shortfalls += _check_pinned(host, usage, request)
    nodes, numa_shortfalls = _numa_nodes(host, usage, request)
    shortfalls += numa_shortfalls
    pools, disk_shortfalls = _disk_pools(host, vms, request)
    shortfalls += disk_shortfalls
    if shortfalls:
        raise DoesNotFit(host.name, shortfalls)
    return Placement(numa_nodes=nodes, pinned=tuple(sorted(request.pinned)), disk_pools=pools)


def as_allocation(request: Request, placement: Placement) -> Allocation:
    """The Allocation a placed request becomes (for accounting the next one)."""
    return Allocation(cores=request.cores, memory=request.memory, pinned=placement.pinned,
                      hugepages_backed=request.hugepages_backed, numa_nodes=placement.numa_nodes,
                      disks=tuple(DiskAllocation(p, d.size) for p, d in zip(placement.disk_pools, request.disks)))
