"""Allocation: which machine a `machines/?op=allocate` gets, and where a VM is composed for it.

1. A **Ready** machine that nobody owns and that matches every constraint is
   preferred; among several, the cheapest (fewest cores, then memory, then
   disk) is taken, so bigger machines stay available.  It is claimed with a
   conditional UPDATE, so concurrent allocations never share a machine.
2. If none matches and the caller named no machine (`system_id`/`name`), a
   VM is **composed on demand** (MAAS's dynamic compose) on a VM host that
   passes the host-level filters (zone, pool, pod, pod_type, pod tags,
   architecture) and can hold it: the placement rules of `region.placement`
   over the host's recorded capacity and current VMs, plus the interfaces
   constraint resolved against the host's interfaces, all read in one
   transaction.
3. Host policy: **pack**: the fitting host with the least memory left
   after the VM (then the fewest cores left, then the lowest id) goes first,
   keeping big hosts free for big VMs.  `spread` (the most left first) is
   chosen by the region setting `allocation_policy = "spread"` when the
   configuration has it.  Hosts that cannot overcommit are not preferred:
   the free amounts already count the overcommit ratios.
4. The compose itself re-checks under the host row lock
   (`region.services.compose.reserve_thd`); if a concurrent compose took the
   room (Conflict) or the host failed, the next candidate is tried.
5. The VM is composed `dynamic` (deleted again on release) and owned by the
   caller, then marked Allocated.

Nothing fits: Conflict (HTTP 409, no Retry-After), naming every host and
what it lacks.  Only rack or driver failures on every fitting host give
Unavailable (503).
"""

from __future__ import annotations

import functools

import attrs

from common import hosterrors
from region import placement
from region.db import allocations, hosts, machines, named, networks
from region.netconstraints import ConstraintError, resolve
from region.rpc import NoRackConnected
from region.services import compose
from region.services.allocate_match import (MIB, Constraints, HostOption, Match, compose_ask, composed_match,
                                            free_after, host_filter_reason, machine_cost, match_machine,
                                            network_shortfalls, rank)
from region.services.capacity import capacity_thd, disk_requests
from region.services.context import Context
from region.services.errors import Conflict, FieldError, NotFound, Unavailable
from region.services.machines import MachineViews, views, views_thd


def check_names_thd(cur, c: Constraints) -> None:
    """MAAS: a zone or pool that does not exist is a 400, not an empty match."""
    for field, kind, values in (("zone", named.ZONES, [c.zone] if c.zone else []),
                                ("not_in_zone", named.ZONES, list(c.not_in_zone)),
                                ("pool", named.RESOURCE_POOLS, [c.pool] if c.pool else []),
                                ("not_in_pool", named.RESOURCE_POOLS, list(c.not_in_pool))):
        missing = []
        for value in values:
            try:
                named.get_thd(cur, kind, value)
            except NotFound:
                missing.append(value)
        if missing:
            raise FieldError(field, f"No such {kind.label}(s): {', '.join(missing)}.")


def survey_thd(cur, c: Constraints) -> list[HostOption]:
    """Every VM host, with why it cannot take the VM or how much it would have left."""
    zones = {z.id: z.name for z in named.list_thd(cur, named.ZONES)}
    pools = {p.id: p.name for p in named.list_thd(cur, named.RESOURCE_POOLS)}
    subnet_for_ip = functools.cache(lambda ip: networks.subnet_for_ip_thd(cur, ip))  # once, not once per host
    out = []
    for host in hosts.list_thd(cur):
        reason = host_filter_reason(c, host, zones[host.zone_id], pools[host.pool_id])
        if reason is not None:
            out.append(HostOption(host.id, host.name, reason))
            continue
        ask = compose_ask(c, host)
        capacity, vms = capacity_thd(cur, host)
        request = placement.Request(cores=ask.cores, memory=ask.memory, disks=disk_requests(ask.storage, host))
        problems: list[str] = []
        try:
            placement.place(capacity, vms, request)
        except placement.DoesNotFit as e:
            problems += e.shortfalls
        except placement.InvalidRequest as e:
            problems.append(str(e))
        try:
            ifaces = networks.host_interface_networks_thd(cur, host.id)
            resolved = resolve(list(ask.interfaces), ifaces, host.name, subnet_for_ip)
            problems += network_shortfalls(c, [r.iface for r in resolved])
        except ConstraintError as e:
            problems.append(str(e))
        memory, cores = free_after(capacity, vms, request)
        out.append(HostOption(host.id, host.name, "; ".join(problems) or None, ask, memory, cores))
    return out


@attrs.frozen
class Allocated:
    views: MachineViews  # the one machine allocated (or that would be, on a dry run)
    match: Match
    composed_on: str | None = None  # the VM host, when composed for this allocation

    @property
    def machine(self) -> machines.Machine:
        return self.views.machines[0].machine


def ready_matches_thd(cur, c: Constraints) -> tuple[list[tuple[machines.Machine, Match]], list[str]]:
    """Available machines meeting `c`, cheapest first; and why the named ones do not."""
    zones = {z.id: z.name for z in named.list_thd(cur, named.ZONES)}
    pools = {p.id: p.name for p in named.list_thd(cur, named.RESOURCE_POOLS)}
    by_host = {h.id: h for h in hosts.list_thd(cur)}
    ifaces: dict[int, dict] = {}
    found, why = [], []
    named_only = c.system_id is not None or c.name is not None
    for m in sorted(machines.list_thd(cur), key=machine_cost):
        if named_only and m.system_id != c.system_id and c.name not in (m.hostname, f"{m.hostname}.maas"):
            continue
        if m.status != "ready" or m.owner_id is not None:
            if named_only:
                why.append(f"machine {m.hostname} ({m.system_id}) is not available "
                           f"(status {m.status}{', owned' if m.owner_id is not None else ''})")
            continue
        if m.host_id not in ifaces:
            ifaces[m.host_id] = {i.name: i for i in networks.host_interface_networks_thd(cur, m.host_id)}
        match, reason = match_machine(m, c, host=by_host[m.host_id], zone=zones[m.zone_id],
                                      pool=pools[m.pool_id], host_ifaces=ifaces[m.host_id])
        if match is not None:
            found.append((m, match))
        elif named_only:
            why.append(f"machine {m.hostname} ({m.system_id}) does not match: {reason}")
    if named_only and not why and not found:
        why.append(f"no machine is named {c.system_id or c.name}")
    return found, why


def _allocated_thd(ctx: Context, cur, system_id: str, c: Constraints, how: str) -> MachineViews:
    m = machines.get_thd(cur, system_id)
    text = f"allocated {m.hostname} to {ctx.username} ({how})" + (f": {c.comment}" if c.comment else "")
    ctx.audit_thd(cur, "MACHINE_ALLOCATED", text, "machine", m.system_id)
    return views_thd(cur, [m])


async def allocate(ctx: Context, c: Constraints) -> Allocated:
    """A Ready machine meeting `c` for the actor, or a VM composed for it (see the module doc)."""
    await ctx.db.run(check_names_thd, c)
    found, why = await ctx.db.run(ready_matches_thd, c)
    for m, match in found:
        if c.dry_run:
            return Allocated(await views(ctx, [m]), match)

        def claim_thd(cur, m=m):
            if allocations.claim_thd(cur, m.id, ctx.actor.id, c.agent_name):
                return _allocated_thd(ctx, cur, m.system_id, c, "a Ready machine")
            return None

        claimed = await ctx.db.run(claim_thd)
        if claimed is not None:
            return Allocated(claimed, match)
    if c.system_id is not None or c.name is not None:
        raise Conflict("No available machine matches constraints: " + "; ".join(why) + ".")
    options = await ctx.db.run(survey_thd, c)
    explain = [f"VM host {o.name}: {o.reason}" for o in options if o.reason is not None]
    fitting = rank(options, ctx.config.allocation_policy)
    head = "No available machine matches constraints, and no VM host can compose one"
    if c.dry_run:
        if fitting:
            raise Conflict(f"No Ready machine matches constraints; allocate (without dry_run) would compose a VM "
                           f"on VM host {fitting[0].name} ({fitting[0].ask.cores} cores, "
                           f"{fitting[0].ask.memory // MIB} MiB).")
        raise Conflict(f"{head}: " + ("; ".join(explain) or "there are no VM hosts") + ".")
    failures = []
    for option in fitting:
        try:
            m = await compose.compose_on_host(ctx, option.host_id, option.ask, dynamic=True)
        except (Conflict, FieldError) as e:
            explain.append(f"VM host {option.name}: {getattr(e, 'message', None) or e}")
            continue
        except (hosterrors.DriverError, NoRackConnected, Unavailable) as e:
            failures.append(f"VM host {option.name}: {e or type(e).__name__}")
            continue

        def allocate_thd(cur, m=m):
            if not allocations.claim_thd(cur, m.id, ctx.actor.id, c.agent_name, owned_by_caller=True):
                raise Conflict(f"The VM {m.hostname} composed for this allocation was taken away before it could "
                               f"be allocated.")
            return _allocated_thd(ctx, cur, m.system_id, c, f"composed on VM host {option.name}")

        composed = await ctx.db.run(allocate_thd)
        return Allocated(composed, composed_match(composed.machines[0].machine, c), option.name)
    if failures:
        raise Unavailable("Composing a VM for this allocation failed: " + "; ".join(failures + explain) + ".")
    raise Conflict(f"{head}: " + ("; ".join(explain) or "there are no VM hosts") + ".")
