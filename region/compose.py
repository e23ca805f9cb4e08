"""Composing and decomposing VMs: exact accounting under concurrency, no orphans.

1. One transaction locks the host row (`FOR UPDATE`), places the VM over the
   host's recorded capacity and every VM already there (including those still
   being composed), allocates any static IPs, and inserts the machine as
   'composing'.  Concurrent composes on one host therefore queue on the lock
   and each sees the others' reservations: none can overfill the host.
2. A rack creates the VM (`ComposeVM`); the driver removes what it created if
   it fails.
3. Success marks the machine 'ready' with what the host reported.  A clean
   failure drops the reservation.  An unclear one (rack lost, timeout) first
   asks a rack to delete the VM; if even that fails the 'composing' record
   stays and the next refresh settles it (adopts the VM if it exists, drops
   the record after a grace period if not).  So the record and the VM end up
   both existing or neither.
"""

from __future__ import annotations

import attrs
from twisted.logger import Logger

from common import hosterrors
from common.models import ComposeRequest, RequestedDisk, RequestedNic, VMDisk
from common.tls import new_system_id
from region import placement
from region.api.compose_form import ComposeAsk
from region.db import events, host_inventory, hosts, machines, named, networks
from region.db.errors import FieldError, NotFound
from region.netconstraints import ConstraintError, attach_type, resolve
from region.rpc import NoRackConnected
from region.vmhosts import CallLost

log = Logger()

NICTYPE = {"bridge": "bridged", "macvlan": "macvlan", "sriov": "sriov"}


class ComposeRefused(Exception):
    """The host cannot take the VM; str() explains what falls short (HTTP 409)."""


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


def capacity_thd(cur, host: hosts.VMHost) -> tuple[placement.HostCapacity, list[placement.Allocation]]:
    capacity = host_capacity(host, host_inventory.numa_nodes_thd(cur, host.id))
    return capacity, [allocation_of(m) for m in machines.list_for_host_thd(cur, host.id)]


def allocation_of(m: machines.Machine) -> placement.Allocation:
    return placement.Allocation(
        cores=m.cpu_count, memory=m.memory, pinned=tuple(m.pinned_cores), hugepages_backed=m.hugepages_backed,
        numa_nodes=tuple(m.numa_nodes), disks=tuple(placement.DiskAllocation(d.pool, d.size) for d in m.disks))


def _disk_requests(ask: ComposeAsk, pool_names: list[str]) -> tuple[placement.DiskRequest, ...]:
    # As in MAAS, a disk's tags choose a pool only when one names an existing pool.
    return tuple(placement.DiskRequest(s.size, next((t for t in s.tags if t in pool_names), None))
                 for s in ask.storage)


def _sriov_shortfalls_thd(cur, host: hosts.VMHost, nics: list[machines.NewNic], ifaces) -> list[str]:
    wanted: dict[str, int] = {}
    for nic in nics:
        if nic.attach_type == "sriov":
            wanted[nic.attach_name] = wanted.get(nic.attach_name, 0) + 1
    used = machines.vfs_used_thd(cur, host.id) if wanted else {}
    out = []
    for name, count in wanted.items():
        limit = next(i.sriov_max_vfs for i in ifaces if i.name == name)
        free = limit - used.get(name, 0)
        if count > free:
            out.append(f"interface {name} has {max(free, 0)} free SR-IOV VFs of {limit}; {count} needed")
    return out


def _zone_pool_thd(cur, ask: ComposeAsk, host: hosts.VMHost) -> tuple[int, int]:
    try:
        zone = named.get_thd(cur, named.ZONES, ask.zone) if ask.zone else named.get_default_thd(cur, named.ZONES)
    except NotFound:
        raise FieldError("zone", f"Select a valid choice. {ask.zone} is not one of the available choices.") from None
    try:
        pool_id = named.get_thd(cur, named.RESOURCE_POOLS, ask.pool).id if ask.pool else host.pool_id
    except NotFound:
        raise FieldError("pool", f"Select a valid choice. {ask.pool} is not one of the available choices.") from None
    return zone.id, pool_id


def _hostname_thd(cur, ask: ComposeAsk) -> str:
    if ask.hostname:
        if machines.hostname_taken_thd(cur, ask.hostname):
            raise FieldError("hostname", f'Node with hostname "{ask.hostname}" already exists.')
        return ask.hostname
    while True:
        name = f"vm-{new_system_id()}"
        if not machines.hostname_taken_thd(cur, name):
            return name


def reserve_thd(cur, host_id: int, ask: ComposeAsk, owner_id: int | None, dynamic: bool,
                region_id: str | None = None):
    """Place and record the VM (status 'composing'); returns (machine, request for the rack)."""
    # READ COMMITTED + the host row lock: once the lock is ours, every later
    # statement sees the reservations committed before it.  (Under the pool's
    # REPEATABLE READ the snapshot would predate the wait and miss them.)
    cur.execute("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
    cur.execute("SELECT id FROM vm_hosts WHERE id = %s FOR UPDATE", (host_id,))
    host = hosts.get_thd(cur, host_id)
    if host.state != "ready":
        raise hosterrors.DriverError(f"VM host {host.name} is not ready ({host.state}): {host.state_message}")
    zone_id, pool_id = _zone_pool_thd(cur, ask, host)
    hostname = _hostname_thd(cur, ask)
    capacity, allocations = capacity_thd(cur, host)
    request = placement.Request(cores=ask.cores, memory=ask.memory, pinned=ask.pinned_cores,
                                hugepages_backed=ask.hugepages_backed,
                                disks=_disk_requests(ask, [p.name for p in host.storage_pools]))
    try:
        ifaces = networks.host_interface_networks_thd(cur, host.id) if ask.interfaces else []
        resolved = resolve(list(ask.interfaces), ifaces, host.name,
                           lambda ip: networks.subnet_for_ip_thd(cur, ip))
    except ConstraintError as e:
        raise FieldError("interfaces", str(e)) from None
    nics = [machines.NewNic(r.ask.ifname, attach_type(r.iface), r.iface.name, 0, r.iface.id) for r in resolved]
    try:
        placed = placement.place(capacity, allocations, request)
        shortfalls = _sriov_shortfalls_thd(cur, host, nics, ifaces)
    except placement.InvalidRequest as e:
        raise FieldError(e.field, str(e)) from None
    except placement.DoesNotFit as e:
        placed, shortfalls = None, list(e.shortfalls) + _sriov_shortfalls_thd(cur, host, nics, ifaces)
    if shortfalls:
        raise ComposeRefused(f"VM host {host.name} cannot fit this VM: " + "; ".join(shortfalls) + ".")
    disks = [VMDisk(s.label, s.size, pool) for s, pool in zip(ask.storage, placed.disk_pools)]
    new = machines.NewMachine(
        hostname=hostname, host_id=host.id, project=host.project, architecture=ask.architecture,
        cpu_count=ask.cores, memory=ask.memory, pinned_cores=list(placed.pinned),
        hugepages_backed=ask.hugepages_backed, numa_nodes=list(placed.numa_nodes), zone_id=zone_id,
        pool_id=pool_id, owner_id=owner_id, dynamic=dynamic, tags=list(host.tags), disks=disks, nics=nics,
        composing_region=region_id)
    machine, nic_ids = machines.reserve_thd(cur, new)
    for r in resolved:
        for ip in r.ask.ips:
            subnet = networks.subnet_for_ip_thd(cur, ip)
            networks.allocate_ip_thd(cur, subnet.id, ip, nic_ids[r.ask.ifname])
    compose_request = ComposeRequest(
        instance_name=hostname, architecture=ask.architecture, cores=ask.cores,
        memory=ask.memory, pinned_cores=list(placed.pinned), hugepages_backed=ask.hugepages_backed,
        disks=[RequestedDisk("root" if i == 0 else f"disk{i}", d.size, d.pool) for i, d in enumerate(disks)],
        nics=[RequestedNic(n.name, NICTYPE[n.attach_type], n.attach_name) for n in nics])
    return machine, compose_request


def for_project(target, project: str):
    """The host target aimed at the project a machine lives in."""
    return attrs.evolve(target, project=project)


def _event_thd(cur, kind: str, text: str, machine: machines.Machine, username: str | None) -> None:
    events.record_thd(cur, kind, text, level="AUDIT", username=username, object_type="machine",
                      object_id=machine.system_id)


async def compose(region, host_id: int, ask: ComposeAsk, user, dynamic: bool = False) -> machines.Machine:
    owner_id = user.id if dynamic else None

    def reserve_and_target_thd(cur):
        machine, request = reserve_thd(cur, host_id, ask, owner_id, dynamic, region.region_id)
        return machine, request, region.hosts.target_thd(cur, hosts.get_thd(cur, host_id))

    machine, request, target = await region.db.run(reserve_and_target_thd)
    try:
        vm = await region.hosts.compose_vm(target, request)
    except (hosterrors.DriverError, NoRackConnected) as e:
        # A driver's own failure cleaned up after itself; a lost call may have left a VM.
        await _abandon(region, machine, target, clean=not isinstance(e, CallLost))
        raise
    except BaseException:
        await _abandon(region, machine, target, clean=False)
        raise

    def finish_thd(cur):
        done = machines.finish_compose_thd(cur, machine.id, vm)
        _event_thd(cur, "MACHINE_COMPOSED", f"composed {done.hostname} on VM host {host_id}", done,
                   user.username)
        return done

    return await region.db.run(finish_thd)


async def _abandon(region, machine: machines.Machine, target, clean: bool) -> None:
    """Drop a reservation whose VM was not (or may not have been) created."""
    if not clean:
        try:
            await region.hosts.delete_vm(for_project(target, machine.project), machine.instance_name)
        except Exception as e:
            log.warn("compose of {name} ended unclearly and the VM could not be removed ({error}); the next "
                     "refresh of the host settles it", name=machine.hostname, error=str(e) or type(e).__name__)
            return
    await region.db.run(machines.delete_thd, machine.id)


async def decompose(region, machine: machines.Machine, username: str | None, target=None) -> list[str]:
    """Delete the VM on its host, then the record (freeing its IPs, VFs and resources)."""
    if target is None:
        _, target = await region.hosts.target(machine.host_id)
    warnings = await region.hosts.delete_vm(for_project(target, machine.project), machine.instance_name)

    def forget_thd(cur):
        machines.delete_thd(cur, machine.id)
        _event_thd(cur, "MACHINE_DECOMPOSED", f"decomposed {machine.hostname}", machine, username)

    await region.db.run(forget_thd)
    return warnings
