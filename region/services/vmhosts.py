"""VM hosts: add, read, update, delete.

Adding a host discovers it through a rack before anything is stored, so a wrong password,
an unreachable address or a non-LXD endpoint leaves nothing behind; only a host that does
not trust our certificate yet is kept, on purpose, in state `awaiting-trust`.  The host's
other operations (refresh, tags, parameters, resources) are in `vmhost_ops.py`.
"""

from __future__ import annotations

from typing import Callable

import attrs

from common import hosterrors
from common.models import HostTarget
from region.db import hosts, images, listing, machines, named
from region.db.named import NamedObject
from region.services.context import Context
from region.services.errors import FieldError, InvalidInput, NotFound, Unavailable
from region.services.lookups import named_choice_thd
from region.vmhosts import apply_discovery_thd, untrusted_message

# Changing one of these makes an update rediscover the host.
CONNECTION_FIELDS = ("power_address", "project", "certificate", "password")


@attrs.frozen
class HostFields:
    """Validated fields of a create or update; None means "not given"."""

    type: str | None
    power_address: str | None
    name: str | None
    project: str | None
    zone: str | None
    pool: str | None
    tags: list[str] | None
    cpu_over_commit_ratio: float | None
    memory_over_commit_ratio: float | None
    default_macvlan_mode: str | None  # "" clears it
    default_storage_pool: str | None
    certificate: str | None
    key: str | None = attrs.field(repr=False)
    password: str | None = attrs.field(repr=False)
    deploy_profiles: list[str] | None = None  # LXD profiles deployed machines also get


@attrs.frozen
class HostView:
    """A VM host with what its read object shows: its zone, its pool and what its VMs use."""

    host: hosts.VMHost
    zone: NamedObject
    pool: NamedObject
    usage: listing.HostUsage
    images: list[images.HostImage] = attrs.field(factory=list)  # deployed from, so LXD holds them


def views_thd(cur, host_ids: list[int] | None = None) -> list[HostView]:
    """Every host (or those of `host_ids`), ordered by id, in five queries whatever their number."""
    found = listing.hosts_thd(cur, host_ids)
    held = images.held_by_hosts_thd(cur)
    return [HostView(r.host, r.zone, r.pool, r.usage, held.get(r.host.id, [])) for r in found]


def view_thd(cur, host_id: int | str) -> HostView:
    if not str(host_id).isdigit() or not (found := views_thd(cur, [int(host_id)])):
        raise NotFound("VM host")
    return found[0]


async def list_hosts(ctx: Context) -> list[HostView]:
    """Every VM host, ordered by id."""
    return await ctx.db.run(views_thd)


async def get_host(ctx: Context, host_id: int | str) -> HostView:
    return await ctx.db.run(view_thd, host_id)


async def certificate(ctx: Context, name: str) -> str | None:
    """The client certificate of the host called `name` (None: no such host, or none yet)."""
    return await ctx.db.run(hosts.certificate_by_name_thd, name)


def _check_unique_thd(cur, host_type: str, name: str | None, address: str, project: str,
                      exclude_id: int | None = None) -> None:
    if name is not None and hosts.name_taken_thd(cur, name, exclude_id):
        raise FieldError("name", f"A VM host named {name!r} already exists.")
    twin = hosts.find_duplicate_thd(cur, host_type, address, project, exclude_id)
    if twin is not None:
        raise InvalidInput(f"VM host {twin} with type and parameters already exist.")


def _blamed_field(e: hosterrors.DriverError) -> FieldError | None:
    """The field a failed first discovery blames (None: not the request's fault)."""
    if isinstance(e, hosterrors.WrongTrustPassword):
        return FieldError("password", str(e))
    if isinstance(e, (hosterrors.Unreachable, hosterrors.NotLXD, hosterrors.IncompatibleHost)):
        return FieldError("power_address", str(e))
    return None


def _or(value, default):
    return default if value is None else value


async def create_host(ctx: Context, fields: HostFields) -> HostView:
    """Discover the host through a rack, then store it (its key encrypted) with an audit event."""
    def check_thd(cur):
        _check_unique_thd(cur, fields.type, fields.name, fields.power_address, fields.project)
        return (named_choice_thd(cur, named.ZONES, "zone", fields.zone),
                named_choice_thd(cur, named.RESOURCE_POOLS, "pool", fields.pool))

    zone, pool = await ctx.db.run(check_thd)
    if fields.type == "virsh":  # the SSH host key is learned now (trust on first use) and pinned
        target = HostTarget(fields.type, fields.power_address, fields.project, "", "",
                            ssh_password=fields.password or "")
    else:
        target = HostTarget(fields.type, fields.power_address, fields.project, fields.certificate, fields.key)
    try:
        found = await ctx.hosts.discover(target, fields.password)
    except hosterrors.Untrusted:
        found = None
    except hosterrors.DriverError as e:
        raise _blamed_field(e) or e from None

    def create_thd(cur):
        new = hosts.NewHost(fields.name, fields.type, fields.power_address, fields.project,
                            fields.certificate, fields.key, zone.id, pool.id, fields.tags or [],
                            _or(fields.cpu_over_commit_ratio, 1.0), _or(fields.memory_over_commit_ratio, 1.0),
                            fields.default_macvlan_mode or None)
        host = hosts.create_thd(cur, ctx.box, new)
        if fields.deploy_profiles:
            hosts.update_thd(cur, ctx.box, host.id, {"deploy_profiles": fields.deploy_profiles})
        ctx.audit_thd(cur, "VM_HOST_CREATED", f"VM host {host.name} added", "vm-host", host.id)
        if found is None:
            hosts.record_failure_thd(cur, host.id, "awaiting-trust",
                                     untrusted_message(ctx.hosts.region_url, host.name))
        else:
            apply_discovery_thd(cur, host, found, ctx.username)
        hosts.schedule_refresh_thd(cur, host.id, ctx.hosts.next_refresh_in())
        return view_thd(cur, host.id)

    return await ctx.db.run(create_thd)


def _changes_thd(cur, current: hosts.VMHost, fields: HostFields) -> dict:
    """Column changes for an update, after checking names against the database."""
    changes: dict = {}
    for column in ("name", "power_address", "project", "tags", "cpu_over_commit_ratio",
                   "memory_over_commit_ratio", "certificate", "deploy_profiles"):
        value = getattr(fields, column)
        if value is not None:
            changes[column] = value
    if fields.default_macvlan_mode is not None:
        changes["default_macvlan_mode"] = fields.default_macvlan_mode or None
    if fields.zone is not None:
        changes["zone_id"] = named_choice_thd(cur, named.ZONES, "zone", fields.zone).id
    if fields.pool is not None:
        changes["pool_id"] = named_choice_thd(cur, named.RESOURCE_POOLS, "pool", fields.pool).id
    if fields.default_storage_pool is not None:
        wanted = fields.default_storage_pool
        match = [p.name for p in current.storage_pools if wanted in (p.name, str(p.id))]
        if not match:
            raise FieldError("default_storage_pool", f"{wanted!r} is not a storage pool of this VM host.")
        changes["default_storage_pool"] = match[0]
    _check_unique_thd(cur, current.type, changes.get("name"), changes.get("power_address", current.power_address),
                      changes.get("project", current.project), current.id)
    return changes


async def update_host(ctx: Context, host_id: int | str,
                      read_fields: Callable[[hosts.VMHost], HostFields]) -> HostView:
    """Apply the fields `read_fields` parses against the current host (whose type and name
    the request is checked with); changing how the host is reached rediscovers it."""
    current = await ctx.db.run(hosts.get_thd, host_id)
    fields = read_fields(current)

    def update_thd(cur):
        changes = _changes_thd(cur, current, fields)
        host = hosts.update_thd(cur, ctx.box, current.id, changes, key=fields.key)
        ctx.audit_thd(cur, "VM_HOST_UPDATED", f"VM host {host.name} updated: {', '.join(sorted(changes))}",
                      "vm-host", host.id)

    await ctx.db.run(update_thd)
    if any(getattr(fields, f) is not None for f in CONNECTION_FIELDS):
        try:
            await ctx.hosts.refresh(current.id, fields.password, ctx.username)
        except hosterrors.DriverError:
            pass  # As in MAAS the update stands; the read object carries the state and reason.
    return await get_host(ctx, current.id)


async def delete_host(ctx: Context, host_id: int | str, *, decompose: bool) -> None:
    """Forget the host; with `decompose`, delete its VMs on the host first (all or nothing)."""
    host = await ctx.db.run(hosts.get_thd, host_id)
    if decompose:
        await _decompose_all(ctx, host)

    def delete_thd(cur):
        gone = hosts.delete_thd(cur, host.id)
        ctx.audit_thd(cur, "VM_HOST_DELETED", f"VM host {gone.name} removed", "vm-host", gone.id)

    await ctx.db.run(delete_thd)


async def _decompose_all(ctx: Context, host: hosts.VMHost) -> None:
    _, target = await ctx.hosts.target(host.id)
    failed = []
    for vm in await ctx.db.run(machines.list_for_host_thd, host.id):
        try:
            await ctx.hosts.delete_vm(attrs.evolve(target, project=vm.project), vm.instance_name)
        except hosterrors.DriverError as e:
            failed.append(f"{vm.hostname}: {e}")
            continue
        await ctx.db.run(machines.delete_thd, vm.id)
    if failed:
        raise Unavailable(
            f"VM host {host.name} was kept because {len(failed)} of its VMs could not be deleted: "
            + "; ".join(failed) + ". Fix the host and retry, or delete without decompose.")
