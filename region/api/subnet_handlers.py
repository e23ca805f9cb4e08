"""subnets/, ipranges/ and vm-hosts/{id}/interfaces/ (MAAS 2.0 shapes).

Subnets are addressed by id, CIDR (URL-encode the '/': 10.0.0.0%2F24) or
name.  A subnet's space is the space of its VLAN, so it is read-only here.
"""

from __future__ import annotations

from functools import partial
from urllib.parse import unquote

from region.api import network_forms as forms
from region.api.crud_handlers import CrudCollection, CrudItem
from region.api.handler import Call, Handler, operation, restful
from region.api.network_json import address_run_json, catalogued, interface_json, iprange_json, subnet_json
from region.services import subnets
from region.services.subnets import IP_RANGES, SUBNETS


class SubnetsHandler(CrudCollection):
    """Manage subnets."""

    path = "subnets/"
    table = SUBNETS
    render = staticmethod(catalogued(subnet_json))
    spec = staticmethod(partial(forms.subnet_fields, creating=True))
    docs = {
        "read": "List all subnets.",
        "create": """Create a subnet.

        :param cidr: Required. e.g. 10.0.0.0/24.
        :param vlan: Optional. VLAN id.
        :param fabric: Optional. Fabric id or name (with vid; without vlan). Default fabric-0.
        :param vid: Optional. VID on that fabric. Default 0 (untagged).
        :param name: Optional. Defaults to the CIDR.
        :param gateway_ip: Optional. Inside the CIDR.
        :param dns_servers: Optional. Addresses separated by commas or spaces.
        :param description: Optional.
        :param managed: Optional. true or false (default true).
        :param allow_dns: Optional. true or false (default true).
        :param allow_proxy: Optional. true or false (default true).
        """,
    }


class SubnetHandler(CrudItem):
    """Manage a subnet (addressed by id, CIDR or name)."""

    path = "subnets/{id}/"
    table = SUBNETS
    render = staticmethod(catalogued(subnet_json))
    changes = staticmethod(partial(forms.subnet_fields, creating=False))
    docs = {
        "read": "Read a subnet.",
        "update": "Update a subnet: any field of create; a new CIDR must still hold its ranges and IPs.",
        "delete": "Delete a subnet with its IP ranges and allocated addresses.",
    }

    def key(self, call: Call) -> str:
        return unquote(call.path_args["id"])

    @operation("GET", "reserved_ip_ranges")
    async def reserved_ip_ranges(self, call: Call):
        """Addresses in use: ranges, gateway, DNS servers, allocated IPs (start, end,
        num_addresses, purpose)."""
        return [address_run_json(r) for r in await subnets.reserved_ranges(call.ctx, self.key(call))]

    @operation("GET", "unreserved_ip_ranges")
    async def unreserved_ip_ranges(self, call: Call):
        """Runs of free addresses (start, end, num_addresses)."""
        return [address_run_json(r) for r in await subnets.unreserved_ranges(call.ctx, self.key(call))]


# -- IP ranges ----------------------------------------------------------------------------------

class IPRangesHandler(CrudCollection):
    """Manage IP ranges."""

    path = "ipranges/"
    table = IP_RANGES
    render = staticmethod(catalogued(iprange_json))
    spec = staticmethod(partial(forms.range_fields, creating=True))
    docs = {
        "read": "List all IP ranges.",
        "create": """Create a range.

        :param type: Required. reserved or dynamic.
        :param start_ip: Required. Inside the subnet.
        :param end_ip: Required. Inside the subnet, not below start_ip (the range is inclusive).
        :param subnet: Optional. Id, CIDR or name; defaults to the subnet holding start_ip.
        :param comment: Optional.
        """,
    }


class IPRangeHandler(CrudItem):
    """Manage an IP range (addressed by id)."""

    path = "ipranges/{id}/"
    table = IP_RANGES
    render = staticmethod(catalogued(iprange_json))
    changes = staticmethod(partial(forms.range_fields, creating=False))
    docs = {
        "read": "Read an IP range.",
        "update": "Update a range: type, start_ip, end_ip, subnet, comment.",
        "delete": "Delete an IP range.",
    }


# -- VM-host interfaces -------------------------------------------------------------------------

class VmHostInterfacesHandler(Handler):
    """The interfaces of a VM host, with the network each is on."""

    path = "vm-hosts/{id}/interfaces/"

    @restful("GET")
    async def read(self, call: Call):
        """List the host's interfaces with their VLAN, fabric, space and subnets."""
        host_id = call.path_args["id"]
        return [interface_json(host_id, i.row, i.catalog) for i in await subnets.host_interfaces(call.ctx, host_id)]


class VmHostInterfaceHandler(Handler):
    """Link one interface of a VM host (by name or id) to a VLAN, and tag it."""

    path = "vm-hosts/{id}/interfaces/{name}/"

    @restful("GET")
    async def read(self, call: Call):
        """Read one interface with its VLAN, fabric, space and subnets."""
        host_id = call.path_args["id"]
        found = await subnets.host_interface(call.ctx, host_id, unquote(call.path_args["name"]))
        return interface_json(host_id, found.row, found.catalog)

    @restful("PUT", admin_only=True)
    async def update(self, call: Call):
        """Link the interface.

        :param vlan: Optional. VLAN id; "" unlinks the interface.
        :param fabric: Optional. Fabric id or name, with vid (instead of vlan).
        :param vid: Optional. VID on that fabric (fabric-0 when no fabric is given).
        :param subnet: Optional. Id, CIDR or name: that subnet's VLAN.
        :param tags: Optional. Comma-separated; replaces the interface's tags.
        """
        link = forms.interface_link(call)
        host_id = call.path_args["id"]
        found = await subnets.link_host_interface(call.ctx, host_id, unquote(call.path_args["name"]), link)
        return interface_json(host_id, found.row, found.catalog)
