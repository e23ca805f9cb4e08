"""What else is done to one VM host: refresh, re-pin its server certificate, tags, its
connection parameters and its per-NUMA-node resources."""

from __future__ import annotations

from typing import Callable

import attrs

from common import hosterrors
from common.models import HostInterface, NumaNode
from region import placement
from region.db import host_inventory, hosts, machines
from region.db.machines import MachineQuery
from region.services.capacity import allocation_of, host_capacity
from region.services.context import Context
from region.services.errors import HostNotReady, InvalidInput
from region.services.machines import visible_to
from region.services.vmhosts import HostView, get_host, view_thd


async def _ready(ctx: Context, host_id: int) -> HostView:
    view = await get_host(ctx, host_id)
    if view.host.state != "ready":
        raise HostNotReady(view.host.state_message)
    return view


async def refresh(ctx: Context, host_id: int | str, password: str | None) -> HostView:
    """Rediscover the host now (completes a registration once the certificate is trusted);
    a host that is still not ready is a HostNotReady carrying the recorded reason."""
    host = await ctx.db.run(hosts.get_thd, host_id)
    try:
        await ctx.hosts.refresh(host.id, password, ctx.username)
    except hosterrors.DriverError:
        pass  # The recorded message is the helpful one (e.g. the exact trust command).
    return await _ready(ctx, host.id)


async def trust_server(ctx: Context, host_id: int | str, fingerprint: str | None) -> HostView:
    """Pin `fingerprint` (None: whatever the host presents next) with an audit event, then refresh."""
    def repin_thd(cur):
        host = hosts.get_thd(cur, host_id)
        hosts.update_thd(cur, ctx.box, host.id, {"server_fingerprint": fingerprint})
        ctx.audit_thd(cur, "VM_HOST_SERVER_TRUSTED",
                      f"VM host {host.name}: server certificate pin reset to {fingerprint or 'the next one seen'}",
                      "vm-host", host.id)
        return host.id

    repinned = await ctx.db.run(repin_thd)
    await ctx.hosts.refresh(repinned, None, ctx.username)
    return await _ready(ctx, repinned)


@attrs.frozen
class HostParameters:
    """How the host is reached, including its private key."""

    power_address: str
    project: str
    certificate: str | None
    key: str | None = attrs.field(repr=False)


@attrs.frozen
class VirshParameters:
    """How a virsh host is reached, as MAAS shows it: the address and the SSH password."""

    power_address: str
    power_pass: str = attrs.field(repr=False)


async def parameters(ctx: Context, host_id: int | str) -> HostParameters | VirshParameters:
    def parameters_thd(cur):
        host = hosts.get_thd(cur, host_id)
        secret = hosts.key_thd(cur, ctx.box, host.id)
        if host.type == "virsh":
            return VirshParameters(host.power_address, secret or "")
        return HostParameters(host.power_address, host.project, host.certificate, secret)

    return await ctx.db.run(parameters_thd)


@attrs.frozen
class HostResources:
    """The host's recorded inventory and what its VMs hold, accounted as compose places."""

    host: hosts.VMHost
    numa: list[NumaNode]
    interfaces: list[HostInterface]
    vms: list[machines.Machine]  # every VM on the host: what the usage counts
    visible_vms: list[machines.Machine]  # those the actor may see listed (not other users' machines)
    vfs_used: dict[str, int]  # SR-IOV VFs held, by host interface name
    capacity: placement.HostCapacity
    usage: dict[int, placement.NodeUsage]  # by NUMA node index


async def resources(ctx: Context, host_id: int | str) -> HostResources:
    def resources_thd(cur):
        host = hosts.get_thd(cur, host_id)
        numa = host_inventory.numa_nodes_thd(cur, host.id)
        vms = machines.list_for_host_thd(cur, host.id)
        capacity = host_capacity(host, numa)
        return HostResources(host, numa, host_inventory.interfaces_thd(cur, host.id), vms,
                             machines.list_thd(cur, MachineQuery(host_id=host.id), visible_to=visible_to(ctx)),
                             machines.vfs_used_thd(cur, host.id), capacity,
                             placement.node_usage(capacity, [allocation_of(m) for m in vms]))

    return await ctx.db.run(resources_thd)


async def add_tag(ctx: Context, host_id: int | str, tag: str) -> HostView:
    if "," in tag:
        raise InvalidInput('Tag may not contain a ",".')
    return await _retag(ctx, host_id, lambda tags: tags if tag in tags else [*tags, tag])


async def remove_tag(ctx: Context, host_id: int | str, tag: str) -> HostView:
    return await _retag(ctx, host_id, lambda tags: [t for t in tags if t != tag])


async def _retag(ctx: Context, host_id: int | str, change: Callable[[list[str]], list[str]]) -> HostView:
    def retag_thd(cur):
        host = hosts.get_thd(cur, host_id)
        hosts.update_thd(cur, ctx.box, host.id, {"tags": change(list(host.tags))})
        return view_thd(cur, host.id)

    return await ctx.db.run(retag_thd)
