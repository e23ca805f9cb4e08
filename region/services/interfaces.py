"""A machine's interfaces (its VM's NICs) and their links to subnets, as MAAS's
nodes/{system_id}/interfaces/ API has them: read, link_subnet, unlink_subnet,
set_default_gateway, disconnect; and what cloud-init is told about them at deploy.

Changing links is for the machine's owner or an admin (Forbidden otherwise), while the machine
is Ready, Allocated or Broken (Conflict otherwise), as in MAAS.  A STATIC link takes its address
now (the one asked for, or the lowest free one); an AUTO link gets one at deploy
(`nic_configs_thd`, in the deploy's transaction); DHCP and LINK_UP links hold none.
"""

from __future__ import annotations

import ipaddress

import attrs

from region.db import interfaces, ipam, machines, networks, subnets
from region.db.errors import FieldError as DbFieldError
from region.db.network_models import Subnet
from region.services import cloudinit
from region.services.context import Context
from region.services.errors import Conflict, FieldError, Forbidden, NotFound
from region.services.machines import MachineViews, machine_view_thd, visible_to

EDITABLE = ("ready", "allocated", "broken")
MODES = {"AUTO": "auto", "STATIC": "static", "DHCP": "dhcp", "LINK_UP": "link_up"}
ADDRESSED = ("auto", "static")  # modes whose link holds an address and may carry the default gateway


@attrs.frozen
class LinkRequest:
    """op=link_subnet's fields, as given."""

    mode: str  # AUTO, STATIC, DHCP or LINK_UP (any case)
    subnet: str | None = None  # id, CIDR or name
    ip_address: str | None = None  # STATIC only; None: the lowest free address
    default_gateway: bool = False
    force: bool = False


def _nic(m: machines.Machine, nic_id: str | int) -> machines.MachineNic:
    for nic in m.interfaces:
        if str(nic.id) == str(nic_id):
            return nic
    raise NotFound("Interface")


async def get_interfaces(ctx: Context, system_id: str) -> MachineViews:
    """The machine (as its owner, an admin or anyone for an unowned one sees it) with its NICs."""
    def read_thd(cur):
        machines.get_thd(cur, system_id, visible_to=visible_to(ctx))
        return machine_view_thd(cur, system_id)

    return await ctx.db.run(read_thd)


async def get_interface(ctx: Context, system_id: str, nic_id: str) -> MachineViews:
    found = await get_interfaces(ctx, system_id)
    _nic(found.machines[0].machine, nic_id)
    return found


def _editable_thd(cur, ctx: Context, system_id: str, nic_id: str, action: str):
    m = machines.get_thd(cur, system_id)
    nic = _nic(m, nic_id)
    if not (ctx.is_admin or (m.owner_id is not None and m.owner_id == ctx.actor.id)):
        raise Forbidden(f"You don't have permission to {action} {nic.name} of {m.hostname}: only its owner or an "
                        f"admin may.")
    if m.status not in EDITABLE:
        raise Conflict(f"Cannot {action} interface because the machine is not Ready, Allocated, or Broken "
                       f"({m.hostname} is {m.status}).")
    interfaces.lock_nic_thd(cur, nic.id)
    return m, nic


def _subnet_thd(cur, key: str) -> Subnet:
    try:
        return subnets.get_subnet_thd(cur, key)
    except (NotFound, ValueError):  # ValueError: digits int() refuses, such as "²"
        raise FieldError("subnet", f"No subnet {key!r} (give its id, CIDR or name).") from None


def _vlan_of_thd(cur, m: machines.Machine, nic: machines.MachineNic) -> int | None:
    """The VLAN the NIC is on: its own, else its host interface's (None: disconnected or unknown)."""
    if nic.disconnected or nic.vlan_id is not None:
        return nic.vlan_id
    for iface in networks.host_interface_networks_thd(cur, m.host_id):
        if iface.name == nic.attach_name and iface.vlan is not None:
            return iface.vlan.id
    return None


def _check_link_thd(cur, m: machines.Machine, nic: machines.MachineNic, mode: str, subnet: Subnet | None,
                    ask: LinkRequest) -> None:
    if ask.ip_address and mode != "static":
        raise FieldError("ip_address", f"ip_address is only used with mode STATIC, not {ask.mode}.")
    if ask.default_gateway and mode not in ADDRESSED:
        raise FieldError("default_gateway", f"default_gateway can only be used with mode AUTO or STATIC, "
                                            f"not {ask.mode}.")
    if ask.default_gateway and not subnet.gateway_ip:
        raise FieldError("default_gateway", f"Subnet {subnet.cidr} has no gateway_ip to be the default gateway.")
    vlan_id = _vlan_of_thd(cur, m, nic)
    if subnet is not None and vlan_id is not None and subnet.vlan_id != vlan_id and not ask.force:
        raise FieldError("subnet", f"Subnet {subnet.cidr} is not on the VLAN {nic.name} is on: disconnect the "
                                   f"interface first, or link with force.")
    others = [link for link in nic.links if link.mode != "link_up"]
    if mode == "link_up" and others and not ask.force:
        raise FieldError("mode", f"Cannot link {nic.name} as LINK_UP while it has other links: unlink them "
                                 f"first, or link with force.")
    if mode == "dhcp" and any(link.mode == "dhcp" for link in others):
        raise FieldError("mode", f"{nic.name} already has a DHCP link.")
    if mode != "link_up" and subnet is not None and any(link.subnet_id == subnet.id for link in others):
        raise FieldError("subnet", f"{nic.name} is already linked to subnet {subnet.cidr}.")


def _add_link_thd(cur, nic: machines.MachineNic, mode: str, subnet: Subnet | None, ip_address: str | None) -> int:
    if mode != "static":
        return interfaces.add_link_thd(cur, nic.id, mode, subnet.id if subnet else None)
    try:
        ip = ipam.allocate_ip_thd(cur, subnet.id, ip_address or None, nic.id)
    except DbFieldError as e:
        raise FieldError("ip_address" if e.field == "ip" else e.field, e.message) from None
    return interfaces.link_for_ip_thd(cur, nic.id, ip)


async def link_subnet(ctx: Context, system_id: str, nic_id: str, ask: LinkRequest) -> MachineViews:
    mode = MODES.get(ask.mode.upper())
    if mode is None:
        raise FieldError("mode", f"Select one of {', '.join(MODES)}, not {ask.mode!r}.")
    if not ask.subnet and mode != "link_up":
        raise FieldError("subnet", f"subnet is required for mode {ask.mode}.")

    def link_thd(cur):
        m, nic = _editable_thd(cur, ctx, system_id, nic_id, "link subnet")
        subnet = _subnet_thd(cur, ask.subnet) if ask.subnet else None
        _check_link_thd(cur, m, nic, mode, subnet, ask)
        # A LINK_UP link only stands alone: it goes when another link comes (and force drops the others).
        interfaces.delete_links_thd(cur, nic.id, interfaces.LINK_MODES if mode == "link_up" else ("link_up",))
        link_id = _add_link_thd(cur, nic, mode, subnet, ask.ip_address)
        if ask.default_gateway:
            interfaces.make_default_gateway_thd(cur, m.id, link_id)
        interfaces.set_vlan_thd(cur, nic.id, subnet.vlan_id if subnet else nic.vlan_id)
        ctx.audit_thd(cur, "INTERFACE_LINKED", f"{nic.name} of {m.hostname} linked {ask.mode.upper()} to "
                                               f"{subnet.cidr if subnet else 'no subnet'}", "machine", system_id)
        return machine_view_thd(cur, system_id)

    return await ctx.db.run(link_thd)


async def unlink_subnet(ctx: Context, system_id: str, nic_id: str, link_id: int) -> MachineViews:
    def unlink_thd(cur):
        m, nic = _editable_thd(cur, ctx, system_id, nic_id, "unlink subnet")
        if not interfaces.delete_link_thd(cur, nic.id, link_id):
            raise FieldError("id", f"{nic.name} has no link {link_id}.")
        ctx.audit_thd(cur, "INTERFACE_UNLINKED", f"{nic.name} of {m.hostname}: link {link_id} removed", "machine",
                      system_id)
        return machine_view_thd(cur, system_id)

    return await ctx.db.run(unlink_thd)


async def set_default_gateway(ctx: Context, system_id: str, nic_id: str, link_id: int | None) -> MachineViews:
    """The gateway of the link's subnet (`link_id`, or the NIC's one AUTO or STATIC link with a
    gateway per address family) becomes the machine's default route, as MAAS's op."""
    def set_thd(cur):
        m, nic = _editable_thd(cur, ctx, system_id, nic_id, "set default gateway")
        found = {s.id: s for s in subnets.list_subnets_thd(cur)}
        usable = [link for link in nic.links
                  if link.mode in ADDRESSED and link.subnet_id in found and found[link.subnet_id].gateway_ip]
        if link_id is not None:
            chosen = [link for link in usable if link.id == link_id]
            if not chosen:
                raise FieldError("link_id", f"{link_id} is not an AUTO or STATIC link of {nic.name} to a subnet with "
                                            f"a gateway.")
        elif not usable:
            raise FieldError("link_id", f"{nic.name} has no AUTO or STATIC link to a subnet with a gateway.")
        else:
            families = [ipaddress.ip_network(found[link.subnet_id].cidr).version for link in usable]
            if len(set(families)) < len(families):
                raise FieldError("link_id", f"{nic.name} has several gateways in one address family: give link_id.")
            chosen = usable
        for link in chosen:
            interfaces.make_default_gateway_thd(cur, m.id, link.id)
        ctx.audit_thd(cur, "INTERFACE_DEFAULT_GATEWAY", f"{nic.name} of {m.hostname}: default gateway "
                      f"{', '.join(str(found[link.subnet_id].gateway_ip) for link in chosen)}", "machine", system_id)
        return machine_view_thd(cur, system_id)

    return await ctx.db.run(set_thd)


async def disconnect(ctx: Context, system_id: str, nic_id: str) -> MachineViews:
    """Every link of the NIC goes (its addresses freed) and it is on no VLAN, as MAAS's disconnect."""
    def disconnect_thd(cur):
        m, nic = _editable_thd(cur, ctx, system_id, nic_id, "disconnect")
        interfaces.delete_links_thd(cur, nic.id)
        interfaces.set_vlan_thd(cur, nic.id, None, disconnected=True)
        ctx.audit_thd(cur, "INTERFACE_DISCONNECTED", f"{nic.name} of {m.hostname} disconnected", "machine",
                      system_id)
        return machine_view_thd(cur, system_id)

    return await ctx.db.run(disconnect_thd)


# -- at deploy ------------------------------------------------------------------------------------------

def _default_gateways(links: list[tuple[interfaces.InterfaceLink, Subnet]]) -> set[int]:
    """Per address family, the link whose gateway is the machine's default route: the one marked
    default_gateway, else the first addressed link whose subnet has a gateway."""
    chosen: dict[int, interfaces.InterfaceLink] = {}
    for link, subnet in links:
        if link.mode in ADDRESSED and subnet.gateway_ip:
            family = ipaddress.ip_network(subnet.cidr).version
            if family not in chosen or (link.default_gateway and not chosen[family].default_gateway):
                chosen[family] = link
    return {link.id for link in chosen.values()}


def nic_configs_thd(cur, m: machines.Machine) -> list[cloudinit.NicConfig]:
    """What cloud-init is told about each NIC, from its links; AUTO links without an address get
    one now (in the caller's transaction, so once: a redeploy keeps it)."""
    nics = [nic for nic in m.interfaces if nic.mac]
    found = {s.id: s for s in subnets.list_subnets_thd(cur)}
    links = []
    for nic in nics:
        for link in nic.links:
            if link.mode == "auto" and link.ip is None:
                link = attrs.evolve(link, ip=ipam.fill_link_ip_thd(cur, link.id, link.subnet_id))
            links.append((nic.id, link, found.get(link.subnet_id)))
    gateways = _default_gateways([(link, subnet) for _, link, subnet in links if subnet is not None])
    configs = []
    for nic in nics:
        mine = [(link, subnet) for nic_id, link, subnet in links if nic_id == nic.id and subnet is not None]
        addresses = [cloudinit.NicAddress(link.ip, subnet.cidr, subnet.gateway_ip if link.id in gateways else None,
                                          list(subnet.dns_servers))
                     for link, subnet in mine if link.ip is not None]
        dhcp = {ipaddress.ip_network(subnet.cidr).version for link, subnet in mine if link.mode == "dhcp"}
        configs.append(cloudinit.NicConfig(nic.name, nic.mac, addresses, dhcp4=4 in dhcp, dhcp6=6 in dhcp,
                                           configured=bool(nic.links) or nic.disconnected))
    return configs
