"""Machines (every one a VM on a VM host): read, update, delete, power.

Reads return `MachineView`s: the machine with everything its MAAS object shows (host,
zone, pool, owner, the host's interfaces and networks, allocation details), looked up in
the same transaction.
"""

from __future__ import annotations

from typing import Protocol

import attrs

from common import hosterrors
from region.db import allocations, hosts, listing, machines, named
from region.db.machines import MachineQuery
from region.db.named import NamedObject
from region.db.network_models import HostInterfaceNetwork
from region.db.networks import NetworkCatalog
from region.services import compose
from region.services.context import Context, RegionResources
from region.services.domains import DEFAULT_DOMAIN
from region.services.errors import FieldError, NotFound, Unavailable
from region.services.lookups import named_choice_thd


@attrs.frozen
class MachineView:
    """One machine with what its MAAS object shows besides its own row."""

    machine: machines.Machine
    host: hosts.VMHost
    zone: NamedObject
    pool: NamedObject
    owner: str | None  # username
    host_interfaces: list[HostInterfaceNetwork]  # the host's, for NIC VLANs and NUMA alignment
    allocation: allocations.Allocation | None


@attrs.frozen
class MachineViews:
    """Views of several machines and the network catalog they all refer to."""

    machines: list[MachineView]
    catalog: NetworkCatalog  # every subnet and VLAN the views may name


def _views(found: listing.MachineListing) -> MachineViews:
    return MachineViews([MachineView(r.machine, found.hosts[r.machine.host_id], r.zone, r.pool, r.owner,
                                     found.host_interfaces[r.machine.host_id], r.allocation)
                         for r in found.rows], found.catalog)


def views_thd(cur, found: list[machines.Machine]) -> MachineViews:
    """The views of `found`, in its order, in a constant number of queries."""
    views_of = _views(listing.machines_thd(cur, ids=[m.id for m in found]))
    by_id = {v.machine.id: v for v in views_of.machines}
    return attrs.evolve(views_of, machines=[by_id[m.id] for m in found])


def machine_view_thd(cur, system_id: str) -> MachineViews:
    return views_thd(cur, [machines.get_thd(cur, system_id)])


async def views(ctx: Context, found: list[machines.Machine]) -> MachineViews:
    """The views of machines another service (or a read) has found."""
    return await ctx.db.run(views_thd, found)


def visible_to(ctx: Context) -> int | None:
    """Whose machines the actor sees besides unowned ones (None: an admin sees every one);
    another user's machine is as good as absent for them (MAAS: owner data is the owner's)."""
    return None if ctx.is_admin else ctx.actor.id


def visible_views_thd(cur, ctx: Context, query: MachineQuery) -> MachineViews:
    """The views of the machines `query` selects among those the actor may see (five queries)."""
    return _views(listing.machines_thd(cur, query, visible_to=visible_to(ctx)))


class RenderedMachines(Protocol):
    """What a caller kept of machines it rendered before (the API's cache of their JSON)."""

    def missing(self, found: listing.VersionedListing, *, complete: bool) -> list[int]:
        """The ids, in id order, of `found`'s machines it has nothing for at their versions (it
        keeps what it has for the others); `complete`: `found` is every machine there is."""


def _reusing_views_thd(cur, seen_by: int | None, query: MachineQuery, reuse: RenderedMachines) -> MachineViews:
    """The views of the machines of `query` that `reuse` lacks among those `seen_by` sees (see
    `visible_to`): their versions first, then, in the same snapshot, the machines missing, by the
    listing's own WHERE clause when most are (cheaper than thousands of ids), else by id: at most
    six queries."""
    versioned = listing.versions_thd(cur, query, visible_to=seen_by)
    missing = reuse.missing(versioned, complete=seen_by is None and query == MachineQuery())
    if not missing:
        return _views(listing.MachineListing([], versioned.hosts, versioned.host_interfaces, versioned.catalog))
    if len(missing) * 2 <= len(versioned.versions):
        return _views(listing.rows_thd(cur, versioned, ids=missing))
    found = listing.rows_thd(cur, versioned, query, visible_to=seen_by)
    wanted = set(missing)
    return _views(attrs.evolve(found, rows=[r for r in found.rows if r.machine.id in wanted]))


async def list_machines(ctx: Context, query: MachineQuery, *, domain: str | None = None,
                        reuse: RenderedMachines | None = None) -> MachineViews:
    """The machines `query` selects that the actor may see; with `domain`, only if it names
    the default domain (every machine is in it).  With `reuse`, only those it lacks."""
    if domain is not None and domain not in (DEFAULT_DOMAIN.name, str(DEFAULT_DOMAIN.id)):
        return MachineViews([], NetworkCatalog({}, {}, {}, []))
    if reuse is not None:
        return await ctx.db.run(_reusing_views_thd, visible_to(ctx), query, reuse)
    return await ctx.db.run(visible_views_thd, ctx, query)


async def machines_to_render(region: RegionResources, reuse: RenderedMachines) -> MachineViews:
    """Every machine `reuse` lacks, as a listing of all machines shows it: the region's own
    warm-up of its listing cache at start (no actor: nothing is returned to anyone)."""
    return await region.db.run(_reusing_views_thd, None, MachineQuery(), reuse)


async def get_machine(ctx: Context, system_id: str) -> MachineViews:
    def get_thd(cur):
        found = visible_views_thd(cur, ctx, MachineQuery(system_ids=(system_id,)))
        if not found.machines:
            raise NotFound("Machine")
        return found

    return await ctx.db.run(get_thd)


@attrs.frozen
class MachineChanges:
    """What a PUT may change; None or empty: unchanged (the VM itself is not renamed)."""

    hostname: str | None = None
    zone: str | None = None  # name or id
    pool: str | None = None  # name or id


async def update_machine(ctx: Context, system_id: str, changes: MachineChanges) -> MachineViews:
    def update_thd(cur):
        machine = machines.get_thd(cur, system_id)
        columns: dict = {}
        if changes.hostname and changes.hostname != machine.hostname:
            if machines.hostname_taken_thd(cur, changes.hostname):
                raise FieldError("hostname", f'Node with hostname "{changes.hostname}" already exists.')
            columns["hostname"] = changes.hostname
        if changes.zone:
            columns["zone_id"] = named_choice_thd(cur, named.ZONES, "zone", changes.zone).id
        if changes.pool:
            columns["pool_id"] = named_choice_thd(cur, named.RESOURCE_POOLS, "pool", changes.pool).id
        return views_thd(cur, [machines.update_thd(cur, machine.id, columns)])

    return await ctx.db.run(update_thd)


async def delete_machine(ctx: Context, system_id: str) -> None:
    """Delete the machine's VM on its host, then the record (freeing what it held)."""
    machine, target = await ctx.hosts.machine_target(system_id)
    try:
        await compose.decompose(ctx, machine, target)
    except hosterrors.DriverError as e:
        raise Unavailable(f"Unable to decompose machine because: {e}") from None


async def _power(ctx: Context, system_id: str, action: str) -> tuple[machines.Machine, str]:
    """Ask the machine's host to power it on, off, or say its state; a failure records
    power state 'error' and is Unavailable."""
    machine = await ctx.db.run(machines.get_thd, system_id, visible_to=visible_to(ctx))
    _, target = await ctx.hosts.target(machine.host_id)
    try:
        state = await ctx.hosts.power(compose.for_project(target, machine.project), machine.instance_name, action)
    except hosterrors.DriverError as e:
        await ctx.db.run(machines.set_power_state_thd, machine.id, "error")
        raise Unavailable(f"Power {action} of {machine.hostname} failed: {e}") from None
    return machine, state


async def set_power(ctx: Context, system_id: str, on: bool) -> MachineViews:
    """Start the machine's VM, or stop it hard; recorded as an audit event."""
    action = "on" if on else "off"
    machine, state = await _power(ctx, system_id, action)

    def record_thd(cur):
        machines.set_power_state_thd(cur, machine.id, state)
        ctx.audit_thd(cur, "MACHINE_POWER", f"power {action}: {machine.hostname} is {state}", "machine",
                      machine.system_id)
        return machine_view_thd(cur, machine.system_id)

    return await ctx.db.run(record_thd)


async def query_power(ctx: Context, system_id: str) -> str:
    """The VM's power state as its host reports it (also recorded)."""
    machine, state = await _power(ctx, system_id, "query")
    await ctx.db.run(machines.set_power_state_thd, machine.id, state)
    return state
