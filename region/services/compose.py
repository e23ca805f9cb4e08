"""Composing and decomposing VMs (and LXD containers): exact accounting under concurrency, no orphans.

1. One transaction locks the host row (`hosts.lock_for_placement_statements`), places the
   VM over the host's recorded capacity and every VM already there (including those
   still being composed), allocates any static IPs, and inserts the machine as
   'composing'.  Concurrent composes on one host therefore queue on the lock and each
   sees the others' reservations: none can overfill the host.  An ask that names no zone,
   pool, hostname or networks (the common one) needs no other lookup: its transaction is
   two round trips sent from the reactor; any other runs in a thread with its lookups.
2. A rack creates the VM (`ComposeVM`); the driver removes what it created if it fails.
   The request carries the machine's system id as an idempotency key, so a call lost
   with its rack is retried through another rack without making a second VM.
3. Success marks the machine 'ready' with what the host reported.  A clean failure
   drops the reservation.  An unclear one (rack lost, timeout) first asks a rack to
   delete the VM; if even that fails the 'composing' record stays and the next refresh
   settles it (adopts the VM if it exists, drops the record after a grace period if
   not).  So the record and the VM end up both existing or neither.
"""

from __future__ import annotations

import attrs
import psycopg2.errors
from twisted.logger import Logger

from common import hosterrors
from common.models import CONTAINER, ComposeRequest, HostTarget, RequestedDisk, RequestedNic, VMDisk
from common.tls import new_system_id
from region import placement
from region.db import hosts, machines, named, networks, reservations
from region.db.errors import NotFound
from region.db.pool import RETRYABLE
from region.netconstraints import ConstraintError, attach_type, resolve
from region.rpc import NoRackConnected
from region.services import faults
from region.services.capacity import capacity_of, disk_requests
from region.services.compose_request import ComposeAsk, ComposeFields, PhysicalLimits, validate
from region.services.context import Context
from region.services.errors import Conflict, FieldError, HostNotReady, Refused
from region.services.lookups import named_choice_thd
from region.vmhosts import CallLost

log = Logger()

NICTYPE = {"bridge": "bridged", "macvlan": "macvlan", "sriov": "sriov"}


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


def _zone_pool_thd(cur, ask: ComposeAsk, host: hosts.VMHost) -> tuple[int | None, int]:
    """The zone (None: the default one, which the machine's INSERT picks) and the resource pool."""
    zone_id = named_choice_thd(cur, named.ZONES, "zone", ask.zone, echo_value=True).id if ask.zone else None
    pool_id = (named_choice_thd(cur, named.RESOURCE_POOLS, "pool", ask.pool, echo_value=True).id
               if ask.pool else host.pool_id)
    return zone_id, pool_id


def _check_hostname_thd(cur, ask: ComposeAsk) -> None:
    """A hostname asked for must be free (a generated one is drawn when the machine is inserted)."""
    if ask.hostname and machines.hostname_taken_thd(cur, ask.hostname):
        raise FieldError("hostname", machines.hostname_taken_message(ask.hostname))


def _requested_disks(ask: ComposeAsk, disks: list[VMDisk]) -> list[RequestedDisk]:
    """The disks for the rack; a container mounts each data disk at /mnt/<its label>."""
    container = ask.instance_type == CONTAINER
    return [RequestedDisk("root" if i == 0 else f"disk{i}", d.size, d.pool,
                          path=f"/mnt/{d.name}" if container and i else None)
            for i, d in enumerate(disks)]


def reserve_thd(cur, host_id: int, ask: ComposeAsk, owner_id: int | None, dynamic: bool,
                region_id: str | None = None) -> tuple[machines.Machine, ComposeRequest]:
    """Place and record the VM (status 'composing'); returns (machine, request for the rack).

    Raises HostNotReady, Conflict (no room, with every shortfall) or FieldError.
    """
    return reserve_locked_thd(cur, hosts.lock_for_placement_thd(cur, host_id), ask, owner_id, dynamic, region_id)


def reserve_locked_thd(cur, locked: hosts.LockedHost, ask: ComposeAsk, owner_id: int | None, dynamic: bool,
                       region_id: str | None = None) -> tuple[machines.Machine, ComposeRequest]:
    """`reserve_thd` on a host this transaction has locked (`hosts.lock_for_placement_thd`)."""
    host = locked.host
    _check_ready(host)
    zone_id, pool_id = _zone_pool_thd(cur, ask, host)
    _check_hostname_thd(cur, ask)
    try:
        ifaces = networks.host_interface_networks_thd(cur, host.id) if ask.interfaces else []
        resolved = resolve(list(ask.interfaces), ifaces, host.name,
                           lambda ip: networks.subnet_for_ip_thd(cur, ip))
    except ConstraintError as e:
        raise FieldError("interfaces", str(e)) from None
    nics = [machines.NewNic(r.ask.ifname, attach_type(r.iface), r.iface.name, 0, r.iface.id) for r in resolved]
    placed = _placed(locked, ask, lambda: _sriov_shortfalls_thd(cur, host, nics, ifaces))
    new = _new_machine(host, ask, placed, zone_id, pool_id, owner_id, dynamic, region_id, nics)
    machine, nic_ids = reservations.reserve_thd(cur, new)
    for r in resolved:
        for ip in r.ask.ips:
            subnet = networks.subnet_for_ip_thd(cur, ip)
            networks.allocate_ip_thd(cur, subnet.id, ip, nic_ids[r.ask.ifname])
    return machine, _compose_request(machine, ask, placed, new)


def _check_ready(host: hosts.VMHost) -> None:
    if host.state != "ready":
        raise HostNotReady(f"VM host {host.name} is not ready ({host.state}): {host.state_message}")


def _placed(locked: hosts.LockedHost, ask: ComposeAsk, sriov_shortfalls) -> placement.Placement:
    """Where the VM goes on the host, over every VM recorded there; Conflict with every
    shortfall (`sriov_shortfalls()` adds the SR-IOV ones), FieldError for what cannot be asked."""
    host = locked.host
    capacity, allocations = capacity_of(host, locked.load)
    request = placement.Request(cores=ask.cores, memory=ask.memory, pinned=ask.pinned_cores,
                                hugepages_backed=ask.hugepages_backed, disks=disk_requests(ask.storage, host))
    try:
        placed = placement.place(capacity, allocations, request)
        shortfalls = sriov_shortfalls()
    except placement.InvalidRequest as e:
        raise FieldError(e.field, str(e)) from None
    except placement.DoesNotFit as e:
        placed, shortfalls = None, list(e.shortfalls) + sriov_shortfalls()
    if shortfalls:
        raise Conflict(f"VM host {host.name} cannot fit this VM: " + "; ".join(shortfalls) + ".")
    return placed


def _new_machine(host: hosts.VMHost, ask: ComposeAsk, placed: placement.Placement, zone_id: int | None,
                 pool_id: int | None, owner_id: int | None, dynamic: bool, region_id: str | None,
                 nics: list[machines.NewNic]) -> machines.NewMachine:
    return machines.NewMachine(
        hostname=ask.hostname, host_id=host.id, project=host.project, architecture=ask.architecture,
        cpu_count=ask.cores, memory=ask.memory, pinned_cores=list(placed.pinned),
        hugepages_backed=ask.hugepages_backed, numa_nodes=list(placed.numa_nodes), zone_id=zone_id,
        pool_id=pool_id, owner_id=owner_id, dynamic=dynamic, tags=list(host.tags),
        disks=[VMDisk(s.label, s.size, pool) for s, pool in zip(ask.storage, placed.disk_pools)], nics=nics,
        composing_region=region_id, instance_type=ask.instance_type)


def _compose_request(machine: machines.Machine, ask: ComposeAsk, placed: placement.Placement,
                     new: machines.NewMachine) -> ComposeRequest:
    return ComposeRequest(
        instance_name=machine.instance_name, architecture=ask.architecture, cores=ask.cores,
        memory=ask.memory, pinned_cores=list(placed.pinned), hugepages_backed=ask.hugepages_backed,
        disks=_requested_disks(ask, new.disks),
        nics=[RequestedNic(n.name, NICTYPE[n.attach_type], n.attach_name) for n in new.nics],
        reservation=machine.system_id, instance_type=ask.instance_type)


def _on_reactor(ask: ComposeAsk | ComposeFields) -> bool:
    """Whether the placement needs no lookup but the host's: then it runs on the reactor."""
    return not (ask.interfaces or ask.zone or ask.pool or ask.hostname)


async def _reserve_on_reactor(ctx: Context, host_id: int | str, ask: ComposeAsk | ComposeFields,
                              owner_id: int | None, dynamic: bool
                              ) -> tuple[machines.Machine, ComposeRequest, HostTarget]:
    """`reserve_locked_thd` for an ask that names no zone, pool, hostname or networks, in a
    transaction sent from the reactor: lock and read the host (one round trip), place the VM,
    then insert it, COMMIT and read it back (one more)."""
    for _ in range(reservations.RESERVE_ATTEMPTS):
        try:
            async with ctx.db.transaction() as tx:
                locked = await tx.statements(*hosts.lock_for_placement_statements(host_id))
                checked = checked_ask(locked.host, ask) if isinstance(ask, ComposeFields) else ask
                _check_ready(locked.host)
                placed = _placed(locked, checked, lambda: [])
                new = _new_machine(locked.host, checked, placed, None, locked.host.pool_id, owner_id, dynamic,
                                   ctx.region.region_id, [])
                system_id = new_system_id()
                machine = await tx.commit(reservations.insert_statement(new, system_id),
                                          then=reservations.reserved_statement(system_id))
        except psycopg2.errors.UniqueViolation:
            continue  # the random system id or hostname is taken: draw others
        except RETRYABLE:
            continue  # a deadlock with a concurrent writer (PostgreSQL aborted this one): again
        if machine is None:
            raise NotFound("Machine")  # deleted as soon as it was recorded
        return machine, _compose_request(machine, checked, placed, new), ctx.hosts.target_of(locked.host, locked.key)
    raise RuntimeError(f"no free system id and hostname after {reservations.RESERVE_ATTEMPTS} random draws")


def for_project(target: HostTarget, project: str) -> HostTarget:
    """The host target aimed at the project a machine lives in."""
    return attrs.evolve(target, project=project)


def checked_ask(host: hosts.VMHost, fields: ComposeFields) -> ComposeAsk:
    """The fields checked against the host: composable, its architectures and physical size."""
    if "composable" not in host.capabilities:
        raise Refused("VM host does not support composability.")
    return validate(fields, list(host.architectures), PhysicalLimits(host.cores, host.memory))


async def compose(ctx: Context, host_id: int | str, fields: ComposeFields) -> machines.Machine:
    """`op=compose`: a VM (or container) on the host as the fields ask (checked against the host's architectures)."""
    return await compose_on_host(ctx, host_id, fields)


async def compose_on_host(ctx: Context, host_id: int | str, ask: ComposeAsk | ComposeFields, *,
                          dynamic: bool = False) -> machines.Machine:
    """Reserve, have a rack create the VM, and record it ready (or undo the reservation).

    `ask`: already validated, or the API's fields, validated against the host once it is
    locked (one transaction reads, checks and reserves).
    `dynamic`: composed for an allocation, owned by the actor and deleted again on release.
    """
    owner_id = ctx.actor.id if dynamic else None

    def reserve_and_target_thd(cur):
        locked = hosts.lock_for_placement_thd(cur, host_id)
        checked = checked_ask(locked.host, ask) if isinstance(ask, ComposeFields) else ask
        machine, request = reserve_locked_thd(cur, locked, checked, owner_id, dynamic, ctx.region.region_id)
        return machine, request, ctx.hosts.target_of(locked.host, locked.key)

    if _on_reactor(ask):
        machine, request, target = await _reserve_on_reactor(ctx, host_id, ask, owner_id, dynamic)
    else:
        machine, request, target = await ctx.db.run(reserve_and_target_thd)
    faults.compose_step(faults.AFTER_RESERVE)
    try:
        vm = await ctx.hosts.compose_vm(target, request)
    except (hosterrors.DriverError, NoRackConnected) as e:
        # A driver's own failure cleaned up after itself; a lost call may have left a VM.
        await _abandon(ctx, machine, target, clean=not isinstance(e, CallLost))
        raise
    except BaseException:
        await _abandon(ctx, machine, target, clean=False)
        raise
    faults.compose_step(faults.AFTER_RACK_CREATED)

    *changes, finish = reservations.finish_compose_statements(machine, vm)
    done = await ctx.db.statements(*changes, ctx.audit_statement(
        "MACHINE_COMPOSED", f"composed {machine.hostname} on VM host {machine.host_id}", "machine", machine.system_id),
        finish)
    if machine.interfaces:
        done = await ctx.db.run(machines.with_nics_thd, done)
    faults.compose_step(faults.AFTER_RECORD)
    return done


async def _abandon(ctx: Context, machine: machines.Machine, target: HostTarget, clean: bool) -> None:
    """Drop a reservation whose VM was not (or may not have been) created."""
    if not clean:
        try:
            await ctx.hosts.delete_vm(for_project(target, machine.project), machine.instance_name)
        except Exception as e:
            log.warn("compose of {name} ended unclearly and the VM could not be removed ({error}); the next "
                     "refresh of the host settles it", name=machine.hostname, error=str(e) or type(e).__name__)
            return
    await ctx.db.run(machines.delete_thd, machine.id)


async def decompose(ctx: Context, machine: machines.Machine, target: HostTarget | None = None) -> list[str]:
    """Delete the VM on its host, then the record (freeing its IPs, VFs and resources)."""
    if target is None:
        _, target = await ctx.hosts.target(machine.host_id)
    warnings = await ctx.hosts.delete_vm(for_project(target, machine.project), machine.instance_name,
                                         root_disk_only=len(machine.disks) == 1)
    await ctx.db.statements(machines.delete_statement(machine.id),
                       ctx.audit_statement("MACHINE_DECOMPOSED", f"decomposed {machine.hostname}", "machine",
                                           machine.system_id))
    return warnings
