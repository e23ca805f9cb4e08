"""Placement and accounting: pure functions, exhaustively checked (hypothesis)."""

from __future__ import annotations

from collections import defaultdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from region.placement import (
    GIB,
    MIB,
    Allocation,
    DiskRequest,
    DoesNotFit,
    HostCapacity,
    InvalidRequest,
    NumaCapacity,
    PoolCapacity,
    Request,
    as_allocation,
    node_usage,
    place,
)


def host(cores=8, memory=16 * GIB, cpu_ratio=1.0, memory_ratio=1.0, numa=None, pools=None, default=None):
    return HostCapacity("h1", cores, memory, cpu_ratio, memory_ratio,
                        tuple(numa or ()), tuple(pools or (PoolCapacity("default", 100 * GIB, 0),)), default)


@pytest.mark.parametrize("cores,ratio,fits", [(8, 1.0, 8), (8, 0.5, 4), (32, 10.0, 320)])
def test_cpu_overcommit_examples(cores, ratio, fits):
    h = host(cores=cores, cpu_ratio=ratio)
    assert place(h, [], Request(cores=fits, memory=MIB))
    with pytest.raises(DoesNotFit, match=f"needs {fits + 1} cores, host has {fits:g} free of {cores}×{ratio:g}"):
        place(h, [], Request(cores=fits + 1, memory=MIB))


def test_memory_overcommit_example_128_gib_times_5_5():
    h = host(memory=128 * GIB, memory_ratio=5.5, cores=1000)
    assert place(h, [], Request(cores=1, memory=704 * GIB))
    with pytest.raises(DoesNotFit, match="needs 705 GiB memory, host has 704 GiB free of 128 GiB×5.5"):
        place(h, [], Request(cores=1, memory=705 * GIB))
    # What is already allocated counts.
    vms = [Allocation(cores=1, memory=700 * GIB)]
    with pytest.raises(DoesNotFit, match="host has 4 GiB free"):
        place(h, vms, Request(cores=1, memory=5 * GIB))


def two_nodes(hugepages=0):
    return [NumaCapacity(0, (0, 1, 2, 3), 8 * GIB, 2 * MIB if hugepages else 0, hugepages),
            NumaCapacity(1, (4, 5, 6, 7), 8 * GIB, 2 * MIB if hugepages else 0, hugepages)]


def test_one_numa_node_when_it_fits_else_span():
    h = host(numa=two_nodes())
    assert place(h, [], Request(cores=4, memory=4 * GIB)).numa_nodes in ((0,), (1,))
    busy = [Allocation(cores=3, memory=GIB, numa_nodes=(0,))]
    assert place(h, busy, Request(cores=2, memory=GIB)).numa_nodes == (1,)
    assert place(h, [], Request(cores=6, memory=GIB)).numa_nodes == (0, 1)


def test_pinned_cores_exist_are_exclusive_and_decide_the_node():
    h = host(numa=two_nodes())
    assert place(h, [], Request(cores=2, memory=GIB, pinned=(5, 4))).numa_nodes == (1,)
    with pytest.raises(InvalidRequest, match="no core"):
        place(h, [], Request(cores=1, memory=GIB, pinned=(9,)))
    taken = [Allocation(cores=1, memory=GIB, pinned=(5,))]
    with pytest.raises(DoesNotFit, match="core.s. 5 already pinned"):
        place(h, taken, Request(cores=2, memory=GIB, pinned=(4, 5)))


def test_hugepages_are_never_overcommitted_and_explained_per_node():
    h = host(numa=two_nodes(hugepages=512), memory_ratio=10.0)  # 1 GiB of 2 MiB pages per node
    assert place(h, [], Request(cores=1, memory=GIB, hugepages_backed=True)).numa_nodes in ((0,), (1,))
    used = [Allocation(cores=1, memory=GIB, hugepages_backed=True, numa_nodes=(0,))]
    assert place(h, used, Request(cores=1, memory=GIB, hugepages_backed=True)).numa_nodes == (1,)
    both = used + [Allocation(cores=1, memory=GIB, hugepages_backed=True, numa_nodes=(1,))]
    with pytest.raises(DoesNotFit, match="NUMA node 0 has 0 MiB free, NUMA node 1 has 0 MiB free"):
        place(h, both, Request(cores=1, memory=MIB, hugepages_backed=True))
    with pytest.raises(DoesNotFit, match="no NUMA nodes with hugepages"):
        place(host(), [], Request(cores=1, memory=MIB, hugepages_backed=True))


def test_storage_named_default_or_most_free_and_never_overcommitted():
    pools = [PoolCapacity("fast", 10 * GIB, 2 * GIB), PoolCapacity("slow", 100 * GIB, 0)]
    h = host(pools=pools)
    assert place(h, [], Request(1, GIB, disks=(DiskRequest(GIB, "fast"), DiskRequest(GIB)))).disk_pools == \
        ("fast", "slow")
    assert place(host(pools=pools, default="fast"), [], Request(1, GIB, disks=(DiskRequest(GIB),))).disk_pools == \
        ("fast",)
    with pytest.raises(DoesNotFit, match="disk 0 needs 9 GiB in pool fast, which has 8 GiB free"):
        place(h, [], Request(1, GIB, disks=(DiskRequest(9 * GIB, "fast"),)))
    with pytest.raises(InvalidRequest, match="no storage pool 'nvme'"):
        place(h, [], Request(1, GIB, disks=(DiskRequest(GIB, "nvme"),)))
    # Two disks of one request share the pool's room.
    with pytest.raises(DoesNotFit, match="disk 1"):
        place(h, [], Request(1, GIB, disks=(DiskRequest(5 * GIB, "fast"), DiskRequest(5 * GIB, "fast"))))


def test_several_shortfalls_are_all_reported():
    with pytest.raises(DoesNotFit) as e:
        place(host(cores=2, memory=GIB), [], Request(cores=3, memory=2 * GIB))
    assert len(e.value.shortfalls) == 2 and "cores" in str(e.value) and "memory" in str(e.value)


# -- properties ------------------------------------------------------------------------------

requests = st.builds(
    Request,
    cores=st.integers(1, 6),
    memory=st.integers(1, 6 * 1024).map(lambda m: m * MIB),
    hugepages_backed=st.booleans(),
    pinned=st.just(()),
    disks=st.lists(st.builds(DiskRequest, size=st.integers(1, 40).map(lambda g: g * GIB),
                             pool=st.sampled_from([None, "a", "b"])), min_size=1, max_size=3).map(tuple),
)
pinned_requests = st.builds(
    lambda cores, huge: Request(cores=len(cores), memory=GIB // 2, pinned=tuple(sorted(cores)), hugepages_backed=huge,
                                disks=(DiskRequest(GIB),)),
    st.sets(st.integers(0, 7), min_size=1, max_size=3), st.booleans())
hosts = st.builds(
    lambda ratio, mratio, pages, used: host(
        cores=8, memory=16 * GIB, cpu_ratio=ratio, memory_ratio=mratio, numa=two_nodes(hugepages=pages),
        pools=[PoolCapacity("a", 50 * GIB, used), PoolCapacity("b", 80 * GIB, 0)]),
    st.sampled_from([0.5, 1.0, 2.5]), st.sampled_from([0.5, 1.0, 3.0]), st.sampled_from([0, 256, 1024]),
    st.integers(0, 50).map(lambda g: g * GIB),
)


@given(h=hosts, asks=st.lists(st.one_of(requests, pinned_requests), max_size=30))
@settings(max_examples=300, deadline=None)
def test_accepted_vms_never_exceed_capacity_times_ratio(h, asks):
    vms: list[Allocation] = []
    for ask in asks:
        try:
            placement = place(h, vms, ask)
        except (DoesNotFit, InvalidRequest):
            continue
        vms.append(as_allocation(ask, placement))
        assert sum(v.cores for v in vms) <= h.cores * h.cpu_ratio
        general = h.memory - sum(n.hugepage_bytes for n in h.numa)
        assert sum(v.memory for v in vms if not v.hugepages_backed) <= general * h.memory_ratio
        pinned = [c for v in vms for c in v.pinned]
        assert len(pinned) == len(set(pinned)), "a core pinned twice"
        usage = node_usage(h, vms)
        for n in h.numa:
            assert usage[n.index].hugepages <= n.hugepage_bytes + 1e-6 * GIB
        given_by_pool: dict[str, int] = defaultdict(int)
        for v in vms:
            for d in v.disks:
                given_by_pool[d.pool] += d.size
        for p in h.pools:
            assert max(p.used, given_by_pool[p.name]) <= p.total


@given(h=hosts, before=st.lists(requests, max_size=8), ask=requests, extra=requests)
@settings(max_examples=200, deadline=None)
def test_freeing_a_vm_restores_exactly_what_it_held(h, before, ask, extra):
    vms = []
    for r in before:
        try:
            vms.append(as_allocation(r, place(h, vms, r)))
        except (DoesNotFit, InvalidRequest):
            pass

    def outcome(allocations):
        try:
            return place(h, allocations, ask)
        except (DoesNotFit, InvalidRequest) as e:
            return str(e)

    baseline = outcome(vms)
    try:
        added = vms + [as_allocation(extra, place(h, vms, extra))]
    except (DoesNotFit, InvalidRequest):
        return
    freed = [v for v in added if v is not added[-1]]
    assert node_usage(h, freed) == node_usage(h, vms)
    assert outcome(freed) == baseline


def test_nic_numa_alignment_is_reported():
    from region.api.machine_json import numa_alignment
    from region.db.machines import Machine, MachineNic

    nic = lambda name, parent: MachineNic(1, name, None, "bridge", parent, 0, False)  # noqa: E731
    m = Machine(1, "s", "h", 1, "p", "h", "composed", False, "ready", "off", "", 1, [], MIB, False, [1], [], 1, 1,
                None, None, interfaces=[nic("eth0", "br0"), nic("eth1", "enp1")])
    report = numa_alignment(m, {"br0": 1, "enp1": 0})
    assert report["aligned"] is False
    assert [(n["name"], n["aligned"]) for n in report["nics"]] == [("eth0", True), ("eth1", False)]
    assert numa_alignment(m, {})["aligned"] is None


def test_a_hugepage_vm_spanning_nodes_needs_its_share_on_each():
    h = host(numa=two_nodes(hugepages=512))  # 1 GiB of hugepages per node
    half_used = [Allocation(cores=1, memory=GIB // 2, hugepages_backed=True, numa_nodes=(0,))]
    # 1.25 GiB in total is free, but an even split needs 640 MiB on node 0, which has 512 MiB.
    with pytest.raises(DoesNotFit, match="NUMA node 0 has 512 MiB free"):
        place(h, half_used, Request(cores=1, memory=GIB + GIB // 8, hugepages_backed=True))
    quarter_used = [Allocation(cores=1, memory=GIB // 4, hugepages_backed=True, numa_nodes=(0,))]
    ask = Request(cores=1, memory=GIB + GIB // 4, hugepages_backed=True)
    placed = place(h, quarter_used, ask)
    assert placed.numa_nodes == (0, 1)  # 640 MiB on each: node 0 has 768 MiB free
    usage = node_usage(h, quarter_used + [as_allocation(ask, placed)])
    assert usage[0].hugepages <= GIB and usage[1].hugepages <= GIB
    # Pinned: the memory follows the cores, so the node of the pinned cores must hold it.
    with pytest.raises(DoesNotFit, match="NUMA node 0 needs 1 GiB and has 512 MiB free"):
        place(h, half_used, Request(cores=1, memory=GIB, pinned=(1,), hugepages_backed=True))
