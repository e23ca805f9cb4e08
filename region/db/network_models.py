"""Row types of the network tables, and the write helper their modules share.

Addresses (cidr, inet) travel as text: psycopg2 returns them as str, and
callers parse them with `ipaddress` where they need arithmetic.
"""

from __future__ import annotations

import datetime

import attrs
import psycopg2.errors

from region.db.errors import FieldError

DEFAULT_FABRIC_ID = 0  # seeded by 0004_networks.sql, as MAAS numbers it
UNDEFINED_SPACE = "undefined"  # what MAAS shows (and accepts) for "no space"


@attrs.frozen
class Space:
    id: int
    name: str
    description: str


@attrs.frozen
class Fabric:
    id: int
    name: str
    class_type: str | None
    description: str


@attrs.frozen
class Vlan:
    id: int
    fabric_id: int
    vid: int
    name: str
    mtu: int
    dhcp_on: bool
    space_id: int | None
    description: str

    @property
    def is_default(self) -> bool:
        """Every fabric's untagged VLAN (vid 0) is its default and cannot be deleted."""
        return self.vid == 0


@attrs.frozen
class Subnet:
    id: int
    name: str
    cidr: str
    vlan_id: int
    gateway_ip: str | None
    dns_servers: list[str]
    description: str
    managed: bool
    allow_dns: bool
    allow_proxy: bool


@attrs.frozen
class IPRange:
    id: int
    subnet_id: int
    type: str  # reserved | dynamic
    start_ip: str
    end_ip: str
    comment: str


@attrs.frozen
class StaticIP:
    id: int
    subnet_id: int
    ip: str
    machine_interface_id: int | None
    alloc_type: str
    created: datetime.datetime


@attrs.frozen
class HostInterfaceNetwork:
    """A VM-host interface with the network it is linked to (what compose matches on)."""

    id: int
    name: str
    type: str
    mac: str
    numa_node: int | None
    sriov_max_vfs: int
    link_speed: int | None
    tags: list[str]
    vlan: Vlan | None
    fabric: Fabric | None
    space: Space | None
    subnets: list[Subnet]


SPACE_COLUMNS = "id, name, description"
FABRIC_COLUMNS = "id, name, class_type, description"
VLAN_COLUMNS = "id, fabric_id, vid, name, mtu, dhcp_on, space_id, description"
# host() drops the "/32" PostgreSQL adds when printing an inet.
SUBNET_COLUMNS = ("id, name, text(cidr), vlan_id, host(gateway_ip), dns_servers, description, managed,"
                  " allow_dns, allow_proxy")
IPRANGE_COLUMNS = "id, subnet_id, type, host(start_ip), host(end_ip), comment"
STATIC_IP_COLUMNS = "id, subnet_id, host(ip), machine_interface_id, alloc_type, created"


def subnet_row(r) -> Subnet:
    return Subnet(*r[:5], list(r[5]), *r[6:])


def guarded_write(cur, sql: str, args: tuple, conflicts: dict[str, FieldError]):
    """Run one INSERT/UPDATE; a unique or check violation named in `conflicts` becomes
    that FieldError, with the transaction still usable (the savepoint is why)."""
    cur.execute("SAVEPOINT guarded_write")
    try:
        cur.execute(sql, args)
    except (psycopg2.errors.UniqueViolation, psycopg2.errors.CheckViolation) as e:
        cur.execute("ROLLBACK TO SAVEPOINT guarded_write")
        error = conflicts.get(e.diag.constraint_name)
        if error is None:
            raise
        raise error from None
    row = cur.fetchone() if cur.description else None  # before RELEASE replaces the result
    cur.execute("RELEASE SAVEPOINT guarded_write")
    return row
