"""What the holder of an allocated machine does with it: release, owner data (deploy is
services/deploy.py, which uses `machine_for` and `claim_if_free`).

Only the owner or an admin may (Forbidden otherwise); a Ready machine nobody owns may
be deployed by anyone (it is allocated to them first).  Every state change is a
conditional UPDATE, so a concurrent change is a Conflict, never a silent overwrite.
Release goes through Releasing: a VM composed by allocate is decomposed, a deployed one
has its root disk emptied and its cloud-init data removed, then it is Ready.
"""

from __future__ import annotations

import attrs

from common import hosterrors
from region.db import allocations, deploys, interfaces, machines
from region.rpc import NoRackConnected
from region.services import compose
from region.services.context import Context
from region.services.errors import Conflict, Forbidden, NotFound, Refused, Unavailable
from region.services.machines import MachineViews, views, views_thd

RELEASABLE = ("allocated", "deploying", "deployed", "failed_deployment")
DEPLOYED_ONCE = ("deploying", "deployed", "failed_deployment")  # the instance was rebuilt from an image


@attrs.frozen
class Released:
    """The machine after its release, or (`decomposed`) as it was just before its VM went."""

    views: MachineViews
    decomposed: bool = False


def _may_manage(user, m: machines.Machine) -> bool:
    return bool(user.is_superuser) or (m.owner_id is not None and m.owner_id == user.id)


async def machine_for(ctx: Context, system_id: str, action: str) -> machines.Machine:
    """The machine, if the actor may `action` it ("release", "deploy", "set owner data of")."""
    m = await ctx.db.run(machines.get_thd, system_id)
    if not _may_manage(ctx.actor, m) and not (action == "deploy" and m.status == "ready" and m.owner_id is None):
        raise Forbidden(f"You don't have permission to {action} {m.hostname}: only its owner or an admin may.")
    return m


async def release(ctx: Context, system_id: str) -> Released:
    """Release the machine: a dynamic one is decomposed, any other goes back to Ready, powered
    off, its allocation cleared.  A Ready machine is left as it is."""
    m = await machine_for(ctx, system_id, "release")
    if m.status == "ready":
        return Released(await views(ctx, [m]))
    if m.status not in RELEASABLE:
        raise Conflict(f"Machine {m.hostname} cannot be released in its current state ({m.status}).")
    last = await views(ctx, [m]) if m.dynamic else None  # what the machine was, once it is gone
    after = await _release_one(ctx, m)
    return Released(last, decomposed=True) if after is None else Released(await views(ctx, [after]))


async def release_many(ctx: Context, system_ids: list[str]) -> list[str]:
    """Release every machine named that is held (Ready ones are left as they are); nothing
    is released unless all can be.  Returns the system ids released."""
    def load_thd(cur):
        found, missing = [], []
        for system_id in dict.fromkeys(system_ids):
            try:
                found.append(machines.get_thd(cur, system_id))
            except NotFound:
                missing.append(system_id)
        return found, missing

    found, missing = await ctx.db.run(load_thd)
    if missing:
        raise Refused(f"Unknown machine(s): {', '.join(missing)}.")
    denied = [m.system_id for m in found if not _may_manage(ctx.actor, m)]
    if denied:
        raise Forbidden(f"You don't have the required permission to release the following "
                        f"machine(s): {', '.join(denied)}.")
    stuck = [f"{m.system_id} ({m.status})" for m in found if m.status not in (*RELEASABLE, "ready")]
    if stuck:
        raise Conflict(f"Machine(s) cannot be released in their current state: {', '.join(stuck)}.")
    released = []
    for m in found:
        if m.status in RELEASABLE:
            await _release_one(ctx, m)
            released.append(m.system_id)
    return released


async def _release_one(ctx: Context, m: machines.Machine) -> machines.Machine | None:
    if not await ctx.db.run(deploys.set_status_thd, m.system_id, "releasing", _releasing_message(m),
                            expect=RELEASABLE):
        raise Conflict(f"Can't release {m.hostname}: its state changed meanwhile.")
    try:
        if m.dynamic:  # composed for an allocation: it goes away with it
            await compose.decompose(ctx, m)
            return None
        host, target = await ctx.hosts.target(m.host_id)
        target = compose.for_project(target, m.project)
        if m.status in DEPLOYED_ONCE:
            await ctx.hosts.erase(target, m.instance_name, host.deploy_profiles)
            await ctx.db.run(machines.set_power_state_thd, m.id, "off")
        elif m.power_state == "on":
            state = await ctx.hosts.power(target, m.instance_name, "off")
            await ctx.db.run(machines.set_power_state_thd, m.id, state)
    except (hosterrors.DriverError, NoRackConnected) as e:
        message = f"Release failed: {e}"
        await ctx.db.run(deploys.set_status_thd, m.system_id, m.status, message[:255], expect=("releasing",))
        raise Unavailable(f"Unable to release {m.hostname}: {e}") from None

    def release_thd(cur):
        if allocations.release_thd(cur, m.id):
            deploys.end_thd(cur, m.id)
            interfaces.release_auto_ips_thd(cur, m.id)
            ctx.audit_thd(cur, "MACHINE_RELEASED", f"released {m.hostname}", "machine", m.system_id)
        return machines.get_thd(cur, m.system_id)

    return await ctx.db.run(release_thd)


def _releasing_message(m: machines.Machine) -> str:
    if m.dynamic:
        return "Releasing: deleting the machine composed for this allocation"
    if m.status in DEPLOYED_ONCE:
        return "Releasing: emptying the root disk and removing the cloud-init data"
    return "Releasing: powering off"


async def claim_if_free(ctx: Context, m: machines.Machine) -> None:
    """A Ready machine nobody owns is allocated to the actor first (MAAS lets deploy do that)."""
    if m.status == "ready" and m.owner_id is None:
        if not await ctx.db.run(allocations.claim_thd, m.id, ctx.actor.id, ""):
            raise Conflict(f"Machine {m.hostname} was allocated to someone else meanwhile.")
    elif m.status != "allocated":
        raise Conflict(f"Can't deploy {m.hostname}: it is {m.status}, not allocated.")


async def set_owner_data(ctx: Context, system_id: str, changes: dict[str, str]) -> MachineViews:
    """Set owner data keys; an empty value deletes the key."""
    m = await machine_for(ctx, system_id, "set owner data of")

    def set_thd(cur):
        allocations.update_owner_data_thd(cur, m.id, changes)
        return views_thd(cur, [machines.get_thd(cur, m.system_id)])

    return await ctx.db.run(set_thd)
