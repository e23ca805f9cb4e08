"""nodes/{system_id}/interfaces/ (MAAS 2.0 shapes): a machine's NICs and their links to subnets.

MAAS has these under nodes/ only (no machines/ alias); Terraform's maas_instance uses
disconnect and link_subnet on them between allocate and deploy.
"""

from __future__ import annotations

from region.api.handler import Call, Handler, operation, restful
from region.api.machine_json import render_views
from region.api.network_forms import boolean
from region.api.params import Form
from region.services import interfaces
from region.services.interfaces import LinkRequest
from region.services.machines import MachineViews


def _nics(found: MachineViews) -> list[dict]:
    # The machine object's own interface_set: one rendering for both.
    return render_views(found)[0]["interface_set"]


def _nic(found: MachineViews, nic_id: str) -> dict:
    return next(n for n in _nics(found) if str(n["id"]) == nic_id)


class InterfacesHandler(Handler):
    """Manage a machine's interfaces."""

    path = "nodes/{system_id}/interfaces/"

    @restful("GET")
    async def read(self, call: Call):
        """List the machine's interfaces, each with its links to subnets."""
        return _nics(await interfaces.get_interfaces(call.ctx, call.path_args["system_id"]))


class InterfaceHandler(Handler):
    """Manage one interface of a machine."""

    path = "nodes/{system_id}/interfaces/{id}/"

    @restful("GET")
    async def read(self, call: Call):
        """Read an interface."""
        system_id, nic_id = call.path_args["system_id"], call.path_args["id"]
        return _nic(await interfaces.get_interface(call.ctx, system_id, nic_id), nic_id)

    @operation("POST", "link_subnet")
    async def link_subnet(self, call: Call):
        """Link the interface to a subnet (the machine must be Ready, Allocated or Broken).

        :param mode: Required. AUTO (an address from the subnet at deploy), STATIC (an address now),
            DHCP, or LINK_UP (up, without an address).
        :type mode: String
        :param subnet: Subnet id, CIDR or name (optional for LINK_UP).
        :type subnet: String
        :param ip_address: Optional. STATIC only: the address (default: the lowest free one).
        :type ip_address: String
        :param default_gateway: Optional. AUTO or STATIC: the subnet's gateway is the machine's default route.
        :type default_gateway: Boolean
        :param force: Optional. Link to a subnet of another VLAN, or LINK_UP dropping the other links.
        :type force: Boolean
        """
        form = Form(call.params)
        mode = form.text("mode", required=True, max_length=16)
        subnet = form.text("subnet", max_length=256)
        ip_address = form.text("ip_address", max_length=64)
        default_gateway = boolean(form, "default_gateway")
        force = boolean(form, "force")
        form.check()
        ask = LinkRequest(mode or "", subnet or None, ip_address or None, bool(default_gateway), bool(force))
        system_id, nic_id = call.path_args["system_id"], call.path_args["id"]
        return _nic(await interfaces.link_subnet(call.ctx, system_id, nic_id, ask), nic_id)

    @operation("POST", "unlink_subnet")
    async def unlink_subnet(self, call: Call):
        """Remove one link of the interface (its address, if any, is freed).

        :param id: Required. The link's id (from the interface's links).
        :type id: Int
        """
        form = Form(call.params)
        link_id = form.integer("id", minimum=1, maximum=2**31 - 1, required=True)
        form.check()
        system_id, nic_id = call.path_args["system_id"], call.path_args["id"]
        return _nic(await interfaces.unlink_subnet(call.ctx, system_id, nic_id, link_id), nic_id)

    @operation("POST", "set_default_gateway")
    async def set_default_gateway(self, call: Call):
        """Make the gateway of one of the interface's AUTO or STATIC links the machine's default route.

        :param link_id: Optional. The link (required when the interface has several gateways in one
            address family).
        :type link_id: Int
        """
        form = Form(call.params)
        link_id = form.integer("link_id", minimum=1, maximum=2**31 - 1)
        form.check()
        system_id, nic_id = call.path_args["system_id"], call.path_args["id"]
        return _nic(await interfaces.set_default_gateway(call.ctx, system_id, nic_id, link_id), nic_id)

    @operation("POST", "disconnect")
    async def disconnect(self, call: Call):
        """Remove every link of the interface and take it off its VLAN."""
        system_id, nic_id = call.path_args["system_id"], call.path_args["id"]
        return _nic(await interfaces.disconnect(call.ctx, system_id, nic_id), nic_id)
