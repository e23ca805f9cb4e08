"""subnets/, ipranges/ and vm-hosts/{id}/interfaces/ (MAAS 2.0 shapes).

Subnets are addressed by id, CIDR (URL-encode the '/': 10.0.0.0%2F24) or
name.  A subnet's space is the space of its VLAN, so it is read-only here.
"""

from __future__ import annotations

from urllib.parse import unquote

from region.api import network_forms as fields
from region.api.errors import BadRequest, NotFound
from region.api.handler import Call, Handler, operation, restful
from region.api.network_handlers import audit_thd, with_catalog
from region.api.network_json import interface_json, iprange_json, subnet_json
from region.api.params import Form
from region.api.site import Response
from region.db import ipam, networks, subnets
from region.db.errors import NotFound as RowNotFound
from region.db.network_models import UNDEFINED_SPACE

_SPACE_READ_ONLY = "A subnet's space is its VLAN's space: set the space on the VLAN instead."


def _subnet_key(call: Call) -> str:
    return unquote(call.path_args["id"])


def _subnet_fields(form: Form, *, creating: bool) -> dict:
    """The given subnet fields, syntax-checked (containment is checked in the db layer)."""
    space = form.params.get("space")
    if space not in (None, "", UNDEFINED_SPACE):
        form.error("space", _SPACE_READ_ONLY)
    found = {
        "cidr": fields.cidr(form, required=creating),
        "name": form.text("name", max_length=255) or None,
        "description": form.text("description"),
        "gateway_ip": fields.ip_address(form, "gateway_ip"),
        "dns_servers": fields.ip_list(form, "dns_servers"),
        "managed": fields.boolean(form, "managed"),
        "allow_dns": fields.boolean(form, "allow_dns"),
        "allow_proxy": fields.boolean(form, "allow_proxy"),
    }
    return {k: v for k, v in found.items() if v is not None}


class SubnetsHandler(Handler):
    """Manage subnets."""

    path = "subnets/"

    @restful("GET")
    async def read(self, call: Call):
        """List all subnets."""
        cat = await call.region.db.run(networks.catalog_thd)
        return [subnet_json(s, cat) for s in cat.subnets]

    @restful("POST", admin_only=True)
    async def create(self, call: Call):
        """Create a subnet.

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
        """
        form = Form(call.params)
        given = _subnet_fields(form, creating=True)
        form.check()

        def create_thd(cur):
            vlan = fields.vlan_from_params_thd(cur, call.params, default_to_fabric_0=True)
            subnet = subnets.create_subnet_thd(cur, vlan_id=vlan.id, **given)
            audit_thd(cur, call, "SUBNET_CREATED", f"subnet {subnet.cidr} created", "subnet", subnet.id)
            return subnet

        subnet, cat = await with_catalog(call, create_thd)
        return subnet_json(subnet, cat)


class SubnetHandler(Handler):
    """Manage a subnet (addressed by id, CIDR or name)."""

    path = "subnets/{id}/"

    @restful("GET")
    async def read(self, call: Call):
        """Read a subnet."""
        subnet, cat = await with_catalog(call, lambda cur: subnets.get_subnet_thd(cur, _subnet_key(call)))
        return subnet_json(subnet, cat)

    @restful("PUT", admin_only=True)
    async def update(self, call: Call):
        """Update a subnet: any field of create; a new CIDR must still hold its ranges and IPs."""
        form = Form(call.params)
        changes = _subnet_fields(form, creating=False)
        form.check()

        def update_thd(cur):
            vlan = fields.vlan_from_params_thd(cur, call.params, default_to_fabric_0=False)
            more = {"vlan_id": vlan.id} if vlan else {}
            subnet = subnets.update_subnet_thd(cur, _subnet_key(call), {**changes, **more})
            audit_thd(cur, call, "SUBNET_UPDATED", f"subnet {subnet.cidr} updated", "subnet", subnet.id)
            return subnet

        subnet, cat = await with_catalog(call, update_thd)
        return subnet_json(subnet, cat)

    @restful("DELETE", admin_only=True)
    async def delete(self, call: Call):
        """Delete a subnet with its IP ranges and allocated addresses."""
        def delete_thd(cur):
            subnet = subnets.delete_subnet_thd(cur, _subnet_key(call))
            audit_thd(cur, call, "SUBNET_DELETED", f"subnet {subnet.cidr} deleted", "subnet", subnet.id)

        await call.region.db.run(delete_thd)
        return Response(204)

    @operation("GET", "reserved_ip_ranges")
    async def reserved_ip_ranges(self, call: Call):
        """Addresses in use: ranges, gateway, DNS servers, allocated IPs (start, end,
        num_addresses, purpose)."""
        return await call.region.db.run(ipam.reserved_ranges_thd, _subnet_key(call))

    @operation("GET", "unreserved_ip_ranges")
    async def unreserved_ip_ranges(self, call: Call):
        """Runs of free addresses (start, end, num_addresses)."""
        return await call.region.db.run(ipam.unreserved_ranges_thd, _subnet_key(call))


# -- IP ranges ----------------------------------------------------------------------------------

def _range_fields(form: Form, *, creating: bool) -> dict:
    range_type = form.text("type", required=creating)
    if range_type is not None and range_type not in subnets.RANGE_TYPES:
        form.error("type", f"Select one of {', '.join(subnets.RANGE_TYPES)}.")
    found = {"type_": range_type, "start_ip": fields.ip_address(form, "start_ip") or None,
             "end_ip": fields.ip_address(form, "end_ip") or None, "comment": form.text("comment")}
    for field in ("start_ip", "end_ip"):
        if creating and found[field] is None and field not in form.errors:
            form.error(field, "This field is required.")
    return {k: v for k, v in found.items() if v is not None}  # comment "" clears it


class IPRangesHandler(Handler):
    """Manage IP ranges."""

    path = "ipranges/"

    @restful("GET")
    async def read(self, call: Call):
        """List all IP ranges."""
        ranges, cat = await with_catalog(call, subnets.list_ranges_thd)
        return [iprange_json(r, cat) for r in ranges]

    @restful("POST", admin_only=True)
    async def create(self, call: Call):
        """Create a range.

        :param type: Required. reserved or dynamic.
        :param start_ip: Required. Inside the subnet.
        :param end_ip: Required. Inside the subnet, not below start_ip (the range is inclusive).
        :param subnet: Optional. Id, CIDR or name; defaults to the subnet holding start_ip.
        :param comment: Optional.
        """
        form = Form(call.params)
        given = _range_fields(form, creating=True)
        form.check()

        def create_thd(cur):
            subnet_key = call.params.get("subnet")
            if subnet_key:
                subnet = _subnet_field_thd(cur, subnet_key)
            else:
                subnet = ipam.subnet_for_ip_thd(cur, given["start_ip"])
                if subnet is None:
                    raise BadRequest.field("subnet", f"No subnet contains {given['start_ip']}; give one.")
            found = subnets.create_range_thd(cur, subnet.id, **given)
            audit_thd(cur, call, "IPRANGE_CREATED", f"{found.type} range {found.start_ip}-{found.end_ip} created",
                      "iprange", found.id)
            return found

        found, cat = await with_catalog(call, create_thd)
        return iprange_json(found, cat)


def _subnet_field_thd(cur, key: str):
    try:
        return subnets.get_subnet_thd(cur, key)
    except RowNotFound:
        raise BadRequest.field("subnet", fields.CHOICE) from None


class IPRangeHandler(Handler):
    """Manage an IP range (addressed by id)."""

    path = "ipranges/{id}/"

    @restful("GET")
    async def read(self, call: Call):
        """Read an IP range."""
        found, cat = await with_catalog(call, lambda cur: subnets.get_range_thd(cur, call.path_args["id"]))
        return iprange_json(found, cat)

    @restful("PUT", admin_only=True)
    async def update(self, call: Call):
        """Update a range: type, start_ip, end_ip, subnet, comment."""
        form = Form(call.params)
        given = _range_fields(form, creating=False)
        form.check()

        def update_thd(cur):
            subnet_key = call.params.get("subnet")
            subnet_id = _subnet_field_thd(cur, subnet_key).id if subnet_key else None
            found = subnets.update_range_thd(cur, call.path_args["id"], subnet_key=subnet_id, **given)
            audit_thd(cur, call, "IPRANGE_UPDATED", f"{found.type} range {found.start_ip}-{found.end_ip} updated",
                      "iprange", found.id)
            return found

        found, cat = await with_catalog(call, update_thd)
        return iprange_json(found, cat)

    @restful("DELETE", admin_only=True)
    async def delete(self, call: Call):
        """Delete an IP range."""
        def delete_thd(cur):
            found = subnets.delete_range_thd(cur, call.path_args["id"])
            audit_thd(cur, call, "IPRANGE_DELETED", f"{found.type} range {found.start_ip}-{found.end_ip} deleted",
                      "iprange", found.id)

        await call.region.db.run(delete_thd)
        return Response(204)


# -- VM-host interfaces -------------------------------------------------------------------------

class VmHostInterfacesHandler(Handler):
    """The interfaces of a VM host, with the network each is on."""

    path = "vm-hosts/{id}/interfaces/"

    @restful("GET")
    async def read(self, call: Call):
        """List the host's interfaces with their VLAN, fabric, space and subnets."""
        host_id = call.path_args["id"]
        found, cat = await with_catalog(call, lambda cur: networks.host_interface_networks_thd(cur, host_id))
        return [interface_json(host_id, i, cat) for i in found]


class VmHostInterfaceHandler(Handler):
    """Link one interface of a VM host (by name or id) to a VLAN, and tag it."""

    path = "vm-hosts/{id}/interfaces/{name}/"

    @restful("GET")
    async def read(self, call: Call):
        """Read one interface with its VLAN, fabric, space and subnets."""
        host_id, key = call.path_args["id"], unquote(call.path_args["name"])
        found, cat = await with_catalog(call, lambda cur: networks.host_interface_networks_thd(cur, host_id))
        for iface in sorted(found, key=lambda i: i.name != key):  # a name wins over an id
            if key in (iface.name, str(iface.id)):
                return interface_json(host_id, iface, cat)
        raise NotFound("No interface matches the given query.")

    @restful("PUT", admin_only=True)
    async def update(self, call: Call):
        """Link the interface.

        :param vlan: Optional. VLAN id; "" unlinks the interface.
        :param fabric: Optional. Fabric id or name, with vid (instead of vlan).
        :param vid: Optional. VID on that fabric (fabric-0 when no fabric is given).
        :param subnet: Optional. Id, CIDR or name: that subnet's VLAN.
        :param tags: Optional. Comma-separated; replaces the interface's tags.
        """
        form = Form(call.params)
        tags = fields.tags(form)
        form.check()
        host_id, name = call.path_args["id"], unquote(call.path_args["name"])

        def link_thd(cur):
            params = call.params
            if params.get("subnet"):
                vlan_id = _subnet_field_thd(cur, params.get("subnet")).vlan_id
            elif "vlan" in params and not params.get("vlan"):
                vlan_id = None  # vlan= (empty) unlinks
            else:
                vlan = fields.vlan_from_params_thd(cur, params, default_to_fabric_0=False)
                vlan_id = vlan.id if vlan else networks.UNCHANGED
            iface = networks.link_host_interface_thd(cur, host_id, name, vlan_id, tags)
            audit_thd(cur, call, "VM_HOST_INTERFACE_LINKED",
                      f"interface {iface.name} of VM host {host_id} linked to VLAN "
                      f"{iface.vlan.id if iface.vlan else 'none'}", "vm_host", host_id)
            return iface

        iface, cat = await with_catalog(call, link_thd)
        return interface_json(host_id, iface, cat)
