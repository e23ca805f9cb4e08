"""machines/ (MAAS 2.0 shapes): every machine is a VM on a VM host."""

from __future__ import annotations

from common import hosterrors
from region import compose
from region.api.errors import BadRequest, ServiceUnavailable
from region.api.handler import Call, Handler, operation, restful
from region.api.allocate_ops import AllocateOperations, MachineAllocateOperations
from region.api.machine_json import render_machines  # noqa: F401  (also imported from here by other handlers)
from region.api.params import Form
from region.api.site import Response
from region.db import allocations, events, hosts, machines, named
from region.db.errors import NotFound as RowNotFound

_CHOICE = "Select a valid choice. That choice is not one of the available choices."


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
        """
        agent_name = call.params.get("agent_name")

        def list_thd(cur):
            found = machines.list_thd(cur)
            if agent_name:
                wanted = allocations.ids_with_agent_thd(cur, agent_name)
                found = [m for m in found if m.id in wanted]
            return found

        found = await call.region.db.run(list_thd)
        names, ids = call.params.getlist("hostname"), call.params.getlist("id")
        macs = {m.lower() for m in call.params.getlist("mac_address")}
        found = [m for m in found if (not names or m.hostname in names) and (not ids or m.system_id in ids)
                 and (not macs or macs & {(n.mac or "").lower() for n in m.interfaces})]
        rendered = await render_machines(call, found)
        for key in ("zone", "pool"):
            wanted = call.params.get(key)
            if wanted:
                rendered = [r for r in rendered if r[key]["name"] == wanted]
        return rendered


class MachineHandler(MachineAllocateOperations, Handler):
    """Manage one machine."""

    path = "machines/{system_id}/"

    async def _machine(self, call: Call) -> machines.Machine:
        return await call.region.db.run(machines.get_thd, call.path_args["system_id"])

    async def _render(self, call: Call, machine: machines.Machine) -> dict:
        return (await render_machines(call, [machine]))[0]

    @restful("GET")
    async def read(self, call: Call):
        """Read a machine."""
        return await self._render(call, await self._machine(call))

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
        machine = await self._machine(call)

        def update_thd(cur):
            changes: dict = {}
            if hostname and hostname != machine.hostname:
                if machines.hostname_taken_thd(cur, hostname):
                    raise BadRequest.field("hostname", f'Node with hostname "{hostname}" already exists.')
                changes["hostname"] = hostname
            for field, kind, column in (("zone", named.ZONES, "zone_id"), ("pool", named.RESOURCE_POOLS, "pool_id")):
                value = call.params.get(field)
                if value:
                    try:
                        changes[column] = named.get_thd(cur, kind, value).id
                    except RowNotFound:
                        raise BadRequest.field(field, _CHOICE) from None
            return machines.update_thd(cur, machine.id, changes)

        return await self._render(call, await call.region.db.run(update_thd))

    @restful("DELETE", admin_only=True)
    async def delete(self, call: Call):
        """Delete the machine: its VM is deleted on the host first, then every resource it held is freed."""
        region = call.region

        def load_thd(cur):  # the machine and how to reach its host, in one transaction
            machine = machines.get_thd(cur, call.path_args["system_id"])
            return machine, region.hosts.target_thd(cur, hosts.get_thd(cur, machine.host_id))

        machine, target = await region.db.run(load_thd)
        try:
            await compose.decompose(region, machine, call.user.username, target)
        except hosterrors.DriverError as e:
            raise ServiceUnavailable(f"Unable to decompose machine because: {e}") from None
        return Response(204)

    async def _power(self, call: Call, action: str) -> dict:
        machine = await self._machine(call)
        _, target = await call.region.hosts.target(machine.host_id)
        target = compose.for_project(target, machine.project)
        try:
            state = await call.region.hosts.power(target, machine.instance_name, action)
        except hosterrors.DriverError as e:
            await call.region.db.run(machines.set_power_state_thd, machine.id, "error")
            raise ServiceUnavailable(f"Power {action} of {machine.hostname} failed: {e}") from None

        def record_thd(cur):
            machines.set_power_state_thd(cur, machine.id, state)
            if action != "query":
                events.record_thd(cur, "MACHINE_POWER", f"power {action}: {machine.hostname} is {state}",
                                  level="AUDIT", username=call.user.username, object_type="machine",
                                  object_id=machine.system_id)
            return machines.get_thd(cur, machine.system_id)

        return {"state": state, "machine": await call.region.db.run(record_thd)}

    @operation("POST", "power_on", admin_only=True)
    async def power_on(self, call: Call):
        """Start the machine's VM."""
        return await self._render(call, (await self._power(call, "on"))["machine"])

    @operation("POST", "power_off", admin_only=True)
    async def power_off(self, call: Call):
        """Stop the machine's VM (a hard stop)."""
        return await self._render(call, (await self._power(call, "off"))["machine"])

    @operation("GET", "query_power_state")
    async def query_power_state(self, call: Call):
        """Ask the VM host for the VM's power state."""
        return {"state": (await self._power(call, "query"))["state"]}
