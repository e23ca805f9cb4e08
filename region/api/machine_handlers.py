"""machines/ (MAAS 2.0 shapes): every machine is a VM on a VM host."""

from __future__ import annotations

from region.api.handler import Call, Handler, operation, restful
from region.api.allocate_ops import AllocateOperations, MachineAllocateOperations
from region.api.errors import BadRequest
from region.api.listing_cache import cached_listing
from region.api.machine_json import STATUSES, listing_chunks, render_views
from region.api.params import Form
from region.api.site import Response
from region.api.streaming import streamed
from region.services import machines
from region.services.machines import MachineChanges, MachineQuery


class MachinesHandler(AllocateOperations, Handler):
    """Manage the collection of machines (VMs on VM hosts)."""

    path = "machines/"

    @restful("GET")
    async def read(self, call: Call):
        """List machines.

        :param hostname: Optional. Only machines with these hostnames (repeatable).
        :type hostname: String
        :param id: Optional. Only machines with these system ids (repeatable).
        :type id: String
        :param zone: Optional. Only machines in this zone.
        :type zone: String
        :param pool: Optional. Only machines in this resource pool.
        :type pool: String
        :param agent_name: Optional. Only machines allocated with this agent name (Juju: its model).
        :type agent_name: String
        :param mac_address: Optional. Only machines with a NIC with this MAC (repeatable).
        :type mac_address: String
        :param status: Optional. Only machines in this status, e.g. ``ready`` or ``deployed`` (repeatable).
        :type status: String
        :param owner: Optional. Only machines owned by this user (repeatable).
        :type owner: String
        :param domain: Optional. Only machines in this domain (name or id).
        :type domain: String
        :param tags: Optional. Only machines with every one of these tags (repeatable).
        :type tags: String
        """
        params = call.params
        query = MachineQuery(hostnames=tuple(params.getlist("hostname")), system_ids=tuple(params.getlist("id")),
                             mac_addresses=tuple(params.getlist("mac_address")), zone=params.get("zone") or None,
                             pool=params.get("pool") or None, agent_name=params.get("agent_name") or None,
                             statuses=tuple(_status(s) for s in params.getlist("status")),
                             owners=tuple(params.getlist("owner")),
                             tags=tuple(params.getlist("tags", split_commas=True)))
        reuse = cached_listing(call.ctx)
        return await streamed(machines.list_machines(call.ctx, query, domain=params.get("domain") or None,
                                                     reuse=reuse),
                              reuse.chunks if reuse is not None else listing_chunks)


def _status(given: str) -> str:
    """A status filter as vmyard names it, from that name or MAAS's (``Failed deployment``)."""
    wanted = given.strip().lower().replace(" ", "_")
    for status, (_, name) in STATUSES.items():
        if wanted in (status, name.lower().replace(" ", "_")):
            return status
    raise BadRequest.field("status", f"{given!r} is not a machine status.")


class MachineHandler(MachineAllocateOperations, Handler):
    """Manage one machine."""

    path = "machines/{system_id}/"

    @restful("GET")
    async def read(self, call: Call):
        """Read a machine."""
        return render_views(await machines.get_machine(call.ctx, call.path_args["system_id"]))[0]

    @restful("PUT", admin_only=True)
    async def update(self, call: Call):
        """Update a machine's hostname, zone, pool or tags (the VM itself is not renamed).

        :param hostname: Optional. New hostname.
        :type hostname: String
        :param zone: Optional. Zone name.
        :type zone: String
        :param pool: Optional. Resource pool name.
        :type pool: String
        """
        form = Form(call.params)
        hostname = form.text("hostname", max_length=63)
        form.check()
        changes = MachineChanges(hostname, call.params.get("zone") or None, call.params.get("pool") or None)
        return render_views(await machines.update_machine(call.ctx, call.path_args["system_id"], changes))[0]

    @restful("DELETE", admin_only=True)
    async def delete(self, call: Call):
        """Delete the machine: its VM is deleted on the host first, then every resource it held is freed."""
        await machines.delete_machine(call.ctx, call.path_args["system_id"])
        return Response(204)

    @operation("POST", "power_on", admin_only=True)
    async def power_on(self, call: Call):
        """Start the machine's VM."""
        return render_views(await machines.set_power(call.ctx, call.path_args["system_id"], on=True))[0]

    @operation("POST", "power_off", admin_only=True)
    async def power_off(self, call: Call):
        """Stop the machine's VM (a hard stop)."""
        return render_views(await machines.set_power(call.ctx, call.path_args["system_id"], on=False))[0]

    @operation("GET", "query_power_state")
    async def query_power_state(self, call: Call):
        """Ask the VM host for the VM's power state."""
        return {"state": await machines.query_power(call.ctx, call.path_args["system_id"])}
