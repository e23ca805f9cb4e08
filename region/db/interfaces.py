"""A machine NIC's links to subnets (MAAS's interface links) and its VLAN.

A link is a `static_ips` row with a `mode`: 'static' and 'auto' hold an address (an auto link
gets it at deploy: `ipam.fill_link_ip_thd`), 'dhcp' and 'link_up' never do.  The link's id is
the row's, as MAAS's link id is its StaticIPAddress's.  Addresses are allocated by ipam.py.
"""

from __future__ import annotations

import attrs

LINK_MODES = ("auto", "static", "dhcp", "link_up")


@attrs.frozen
class InterfaceLink:
    id: int
    mode: str  # one of LINK_MODES
    ip: str | None  # None: no address (yet)
    subnet_id: int | None  # None only for a link_up link without a subnet
    default_gateway: bool = False  # this link's subnet gateway is the machine's default route


def lock_nic_thd(cur, nic_id: int) -> None:
    """Hold the NIC's row: concurrent changes to its links queue (REPEATABLE READ: the later one is
    retried and sees the earlier's links)."""
    cur.execute("SELECT 1 FROM machine_interfaces WHERE id = %s FOR UPDATE", (nic_id,))


def add_link_thd(cur, nic_id: int, mode: str, subnet_id: int | None) -> int:
    """A link holding no address (auto before deploy, dhcp, link_up); returns its id."""
    cur.execute("INSERT INTO static_ips (subnet_id, machine_interface_id, mode) VALUES (%s, %s, %s) RETURNING id",
                (subnet_id, nic_id, mode))
    return cur.fetchone()[0]


def link_for_ip_thd(cur, nic_id: int, ip: str) -> int:
    """The id of the link ipam made when it allocated `ip` to the NIC."""
    cur.execute("SELECT id FROM static_ips WHERE machine_interface_id = %s AND ip = %s::inet", (nic_id, ip))
    return cur.fetchone()[0]


def delete_link_thd(cur, nic_id: int, link_id: int) -> bool:
    cur.execute("DELETE FROM static_ips WHERE id = %s AND machine_interface_id = %s", (link_id, nic_id))
    return cur.rowcount == 1


def delete_links_thd(cur, nic_id: int, modes: tuple[str, ...] = LINK_MODES) -> None:
    cur.execute("DELETE FROM static_ips WHERE machine_interface_id = %s AND mode = ANY(%s)", (nic_id, list(modes)))


def make_default_gateway_thd(cur, machine_id: int, link_id: int) -> None:
    """The link becomes its machine's default gateway for its address family (one per family)."""
    cur.execute("UPDATE static_ips s SET default_gateway = (s.id = %s) FROM subnets n"
                " WHERE n.id = s.subnet_id AND family(n.cidr) = (SELECT family(n2.cidr) FROM static_ips s2"
                "   JOIN subnets n2 ON n2.id = s2.subnet_id WHERE s2.id = %s)"
                " AND s.machine_interface_id IN (SELECT id FROM machine_interfaces WHERE machine_id = %s)",
                (link_id, link_id, machine_id))


def release_auto_ips_thd(cur, machine_id: int) -> None:
    """The machine's AUTO links give their addresses back and stay (MAAS's release does so)."""
    cur.execute("UPDATE static_ips SET ip = NULL WHERE mode = 'auto' AND ip IS NOT NULL AND machine_interface_id IN"
                " (SELECT id FROM machine_interfaces WHERE machine_id = %s)", (machine_id,))


def set_vlan_thd(cur, nic_id: int, vlan_id: int | None, *, disconnected: bool = False) -> None:
    """The NIC's own VLAN (None and not disconnected: its host interface's)."""
    cur.execute("UPDATE machine_interfaces SET vlan_id = %s, disconnected = %s WHERE id = %s",
                (vlan_id, disconnected, nic_id))
