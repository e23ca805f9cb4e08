"""Subnets, IP ranges, the address runs of a subnet, and linking VM-host interfaces to VLANs."""

from __future__ import annotations

import attrs

from region.db import ipam, networks, subnets
from region.db.ipam import AddressRun
from region.db.network_models import DEFAULT_FABRIC_ID, HostInterfaceNetwork, IPRange, Subnet, Vlan
from region.services.context import Context
from region.services.crud import Table, given
from region.services.errors import FieldError, NotFound
from region.services.networks import CHOICE, Catalogued, catalogued_thd


@attrs.frozen
class VlanRef:
    """A VLAN as a request names it: `vlan` (an id), or `fabric` (id or name) with an
    optional `vid`, or `vid` alone on fabric-0.  Empty values count as not given."""

    vlan: str | None = None
    fabric: str | None = None
    vid: str | None = None


def vlan_thd(cur, ref: VlanRef, *, default_to_fabric_0: bool) -> Vlan | None:
    """The VLAN `ref` names; when it names none, fabric-0's untagged VLAN or None."""
    if ref.vlan:
        try:
            return networks.get_vlan_thd(cur, ref.vlan.strip())
        except NotFound:
            raise FieldError("vlan", CHOICE) from None
    if not ref.fabric and not ref.vid:
        return networks.default_vlan_thd(cur) if default_to_fabric_0 else None
    try:
        fabric = networks.get_fabric_thd(cur, ref.fabric.strip() if ref.fabric else DEFAULT_FABRIC_ID)
    except NotFound:
        raise FieldError("fabric", CHOICE) from None
    try:
        return networks.get_vlan_by_vid_thd(cur, fabric.id, ref.vid.strip() if ref.vid else 0)
    except NotFound:
        raise FieldError("vid", f"No VLAN with VID {ref.vid} on fabric {fabric.name}.") from None


def subnet_field_thd(cur, key: str) -> Subnet:
    """The subnet a `subnet` field names (id, CIDR or name)."""
    try:
        return subnets.get_subnet_thd(cur, key)
    except NotFound:
        raise FieldError("subnet", CHOICE) from None


# -- subnets ------------------------------------------------------------------------------------

@attrs.frozen
class SubnetFields:
    """None: not given (a default on create, unchanged on update)."""

    vlan: VlanRef = VlanRef()  # create: fabric-0's untagged VLAN when it names none
    cidr: str | None = None  # required on create
    name: str | None = None
    description: str | None = None
    gateway_ip: str | None = None  # "" clears it
    dns_servers: list[str] | None = None
    managed: bool | None = None
    allow_dns: bool | None = None
    allow_proxy: bool | None = None


def _create_subnet_thd(cur, fields: SubnetFields) -> Subnet:
    vlan = vlan_thd(cur, fields.vlan, default_to_fabric_0=True)
    return subnets.create_subnet_thd(cur, vlan_id=vlan.id, **given(fields, leave_out=("vlan",)))


def _update_subnet_thd(cur, key: str, fields: SubnetFields) -> Subnet:
    vlan = vlan_thd(cur, fields.vlan, default_to_fabric_0=False)
    moved = {"vlan_id": vlan.id} if vlan else {}
    return subnets.update_subnet_thd(cur, key, {**given(fields, leave_out=("vlan",)), **moved})


SUBNETS = Table(
    label="subnet",
    event="SUBNET",
    list_thd=subnets.list_subnets_thd,
    get_thd=subnets.get_subnet_thd,
    create_thd=_create_subnet_thd,
    update_thd=_update_subnet_thd,
    delete_thd=subnets.delete_subnet_thd,
    describe=lambda s, verb: f"subnet {s.cidr} {verb}",
    view_thd=catalogued_thd,
)


async def reserved_ranges(ctx: Context, subnet_key: str) -> list[AddressRun]:
    """Addresses in use: ranges, gateway, DNS servers, allocated IPs."""
    return await ctx.db.run(ipam.reserved_ranges_thd, subnet_key)


async def unreserved_ranges(ctx: Context, subnet_key: str) -> list[AddressRun]:
    """Runs of free addresses."""
    return await ctx.db.run(ipam.unreserved_ranges_thd, subnet_key)


# -- IP ranges ----------------------------------------------------------------------------------

@attrs.frozen
class RangeFields:
    """None: not given (unchanged on update)."""

    subnet: str | None = None  # id, CIDR or name; create: the subnet holding start_ip
    type_: str | None = None  # reserved | dynamic; required on create
    start_ip: str | None = None  # required on create
    end_ip: str | None = None  # required on create
    comment: str | None = None  # "" clears it


def _create_range_thd(cur, fields: RangeFields) -> IPRange:
    if fields.subnet:
        subnet = subnet_field_thd(cur, fields.subnet)
    else:
        subnet = ipam.subnet_for_ip_thd(cur, fields.start_ip)
        if subnet is None:
            raise FieldError("subnet", f"No subnet contains {fields.start_ip}; give one.")
    return subnets.create_range_thd(cur, subnet.id, **given(fields, leave_out=("subnet",)))


def _update_range_thd(cur, key: str, fields: RangeFields) -> IPRange:
    subnet_id = subnet_field_thd(cur, fields.subnet).id if fields.subnet else None
    return subnets.update_range_thd(cur, key, subnet_key=subnet_id, **given(fields, leave_out=("subnet",)))


IP_RANGES = Table(
    label="IP range",
    event="IPRANGE",
    object_type="iprange",
    list_thd=subnets.list_ranges_thd,
    get_thd=subnets.get_range_thd,
    create_thd=_create_range_thd,
    update_thd=_update_range_thd,
    delete_thd=subnets.delete_range_thd,
    describe=lambda r, verb: f"{r.type} range {r.start_ip}-{r.end_ip} {verb}",
    view_thd=catalogued_thd,
)


# -- VM-host interfaces -------------------------------------------------------------------------

@attrs.frozen
class InterfaceLink:
    """Where to link a host interface: `subnet` (that subnet's VLAN) wins over `vlan`;
    `unlink` takes it off any VLAN; naming neither keeps its VLAN.  `tags`, unless None,
    replace its tags."""

    subnet: str | None = None
    vlan: VlanRef = VlanRef()
    unlink: bool = False
    tags: list[str] | None = None


async def host_interfaces(ctx: Context, host_id: str) -> list[Catalogued[HostInterfaceNetwork]]:
    def list_thd(cur):
        return catalogued_thd(cur, networks.host_interface_networks_thd(cur, host_id))

    return await ctx.db.run(list_thd)


async def host_interface(ctx: Context, host_id: str, key: str) -> Catalogued[HostInterfaceNetwork]:
    """One interface by name, or by id (a name wins, in case an interface is named with digits)."""
    for found in sorted(await host_interfaces(ctx, host_id), key=lambda i: i.row.name != key):
        if key in (found.row.name, str(found.row.id)):
            return found
    raise NotFound("interface")


async def link_host_interface(ctx: Context, host_id: str, name: str,
                              link: InterfaceLink) -> Catalogued[HostInterfaceNetwork]:
    def link_thd(cur):
        if link.subnet:
            vlan_id = subnet_field_thd(cur, link.subnet).vlan_id
        elif link.unlink:
            vlan_id = None
        else:
            vlan = vlan_thd(cur, link.vlan, default_to_fabric_0=False)
            vlan_id = vlan.id if vlan else networks.UNCHANGED
        iface = networks.link_host_interface_thd(cur, host_id, name, vlan_id, link.tags)
        ctx.audit_thd(cur, "VM_HOST_INTERFACE_LINKED",
                      f"interface {iface.name} of VM host {host_id} linked to VLAN "
                      f"{iface.vlan.id if iface.vlan else 'none'}", "vm_host", host_id)
        return catalogued_thd(cur, [iface])[0]

    return await ctx.db.run(link_thd)
