"""Static IP allocation on subnets, and which parts of a subnet are in use.

An address is usable when it is inside the subnet, is not the IPv4 network or
broadcast address (nor the IPv6 subnet-router anycast address), not the
gateway or one of the subnet's DNS servers, not inside a reserved or dynamic
range, and not allocated already.  The UNIQUE constraint on static_ips.ip is
the final arbiter between concurrent allocators.  A static_ips row without an ip is a NIC's
link that holds no address (yet): it takes nothing from the subnet.
"""

from __future__ import annotations

import ipaddress
from typing import Iterator

import attrs
import psycopg2.errors

from region.db.errors import FieldError
from region.db.network_models import STATIC_IP_COLUMNS, SUBNET_COLUMNS, StaticIP, Subnet, subnet_row
from region.db.subnets import Network, get_subnet_thd, list_ranges_thd, parse_cidr, parse_ip


class IPUnavailable(FieldError):
    """The requested address cannot be allocated (rendered as a 400 naming `ip`)."""

    def __init__(self, message: str) -> None:
        super().__init__("ip", message)


@attrs.frozen
class AddressRun:
    """An inclusive run of addresses of a subnet and why it is in use (free: no purposes)."""

    start: str
    end: str
    num_addresses: int
    purposes: tuple[str, ...] = ()


@attrs.frozen
class Span:
    """An inclusive run of addresses, as integers, and why it is in use."""

    first: int
    last: int
    purposes: tuple[str, ...] = ()

    def as_run(self, version: int) -> AddressRun:
        return AddressRun(str(to_address(self.first, version)), str(to_address(self.last, version)),
                          self.last - self.first + 1, self.purposes)


def to_address(value: int, version: int):
    # ip_address(int) alone would read a small IPv6 value as IPv4.
    return ipaddress.IPv4Address(value) if version == 4 else ipaddress.IPv6Address(value)


def usable_bounds(net: Network) -> tuple[int, int]:
    """First and last address a host may get (RFC 3021 /31, RFC 6164 /127: both ends usable)."""
    first, last = int(net.network_address), int(net.broadcast_address)
    if net.version == 4 and net.prefixlen < 31:
        return first + 1, last - 1
    if net.version == 6 and net.prefixlen < 127:
        return first + 1, last  # the subnet-router anycast address is not a host's
    return first, last


def _in_use_thd(cur, subnet: Subnet, net: Network) -> list[Span]:
    """Every address or range in the subnet that is not free, with its purpose(s), unmerged."""
    spans = [Span(int(ipaddress.ip_address(r.start_ip)), int(ipaddress.ip_address(r.end_ip)), (r.type,))
             for r in list_ranges_thd(cur, subnet.id)]

    def single(ip: str, purpose: str) -> None:
        address = ipaddress.ip_address(ip)
        if address.version == net.version and address in net:
            spans.append(Span(int(address), int(address), (purpose,)))

    if subnet.gateway_ip:
        single(subnet.gateway_ip, "gateway-ip")
    for server in subnet.dns_servers:
        single(server, "dns-server")
    cur.execute("SELECT host(ip) FROM static_ips WHERE subnet_id = %s AND ip IS NOT NULL", (subnet.id,))
    for (ip,) in cur.fetchall():
        single(ip, "assigned-ip")
    return spans


def merge_spans(spans: list[Span]) -> list[Span]:
    """Overlapping spans become one, their purposes combined."""
    merged: list[Span] = []
    for span in sorted(spans, key=lambda s: (s.first, s.last)):
        if merged and span.first <= merged[-1].last:
            top = merged[-1]
            purposes = top.purposes + tuple(p for p in span.purposes if p not in top.purposes)
            merged[-1] = Span(top.first, max(top.last, span.last), purposes)
        else:
            merged.append(span)
    return merged


def free_spans(first: int, last: int, used: list[Span]) -> Iterator[Span]:
    cursor = first
    for span in merge_spans(used):
        if span.last < cursor:
            continue
        if span.first > last:
            break
        if span.first > cursor:
            yield Span(cursor, min(span.first - 1, last))
        cursor = span.last + 1
        if cursor > last:
            return
    if cursor <= last:
        yield Span(cursor, last)


def reserved_ranges_thd(cur, subnet_key: int | str) -> list[AddressRun]:
    """MAAS's `reserved_ip_ranges`: what is in use, merged, each with its purposes."""
    subnet = get_subnet_thd(cur, subnet_key)
    net = parse_cidr(subnet.cidr)
    return [s.as_run(net.version) for s in merge_spans(_in_use_thd(cur, subnet, net))]


def unreserved_ranges_thd(cur, subnet_key: int | str) -> list[AddressRun]:
    """MAAS's `unreserved_ip_ranges`: the runs of addresses still free for allocation."""
    subnet = get_subnet_thd(cur, subnet_key)
    net = parse_cidr(subnet.cidr)
    return [s.as_run(net.version) for s in free_spans(*usable_bounds(net), _in_use_thd(cur, subnet, net))]


def _why_unusable(subnet: Subnet, net: Network, address, used: list[Span]) -> str | None:
    if address.version != net.version or address not in net:
        return f"IP address {address} is not inside the subnet {net}."
    first, last = usable_bounds(net)
    if not first <= int(address) <= last:
        return f"IP address {address} is the network or broadcast address of {net}."
    for span in used:
        if span.first <= int(address) <= span.last:
            return {
                "gateway-ip": f"IP address {address} is the gateway of the subnet {net}.",
                "dns-server": f"IP address {address} is a DNS server of the subnet {net}.",
                "assigned-ip": f"IP address {address} is already in use.",
            }.get(span.purposes[0], f"IP address {address} is inside a {span.purposes[0]} range of {net}.")
    return None


def _insert_thd(cur, subnet_id: int, address, machine_interface_id: int | None, alloc_type: str) -> bool:
    """True if inserted; False if the address was taken (perhaps by a concurrent transaction)."""
    return _claim_thd(cur, "INSERT INTO static_ips (subnet_id, ip, machine_interface_id, alloc_type)"
                           " VALUES (%s, %s::inet, %s, %s)", (subnet_id, str(address), machine_interface_id, alloc_type))


def _claim_thd(cur, sql: str, args: tuple) -> bool:
    """Run the statement giving an address; False if the address was taken (the UNIQUE on ip)
    or the statement changed no row."""
    cur.execute("SAVEPOINT allocate_ip")
    try:
        cur.execute(sql, args)
    except psycopg2.errors.UniqueViolation:
        cur.execute("ROLLBACK TO SAVEPOINT allocate_ip")
        return False
    changed = cur.rowcount == 1
    cur.execute("RELEASE SAVEPOINT allocate_ip")
    return changed


def allocate_ip_thd(cur, subnet_id: int, ip: str | None, machine_interface_id: int | None) -> str:
    """Allocate `ip` (or, if None, the lowest usable free address) on the subnet; returns it as text.

    Raises IPUnavailable (a FieldError on "ip") when the given address cannot be had, and
    FieldError("subnet", ...) when no address is free.
    """
    subnet = get_subnet_thd(cur, subnet_id)
    net = parse_cidr(subnet.cidr)
    used = _in_use_thd(cur, subnet, net)
    if ip is not None:
        address = parse_ip(ip, "ip")
        reason = _why_unusable(subnet, net, address, used)
        if reason is not None:
            raise IPUnavailable(reason)
        if not _insert_thd(cur, subnet.id, address, machine_interface_id, "user"):
            raise IPUnavailable(f"IP address {address} is already in use.")
        return str(address)
    return _first_free_thd(cur, net, used, lambda address: _insert_thd(cur, subnet.id, address,
                                                                         machine_interface_id, "auto"))


def _first_free_thd(cur, net: Network, used: list[Span], take) -> str:
    """The lowest free address that `take(address)` manages to claim, as text."""
    # Our snapshot may not show a concurrent allocation; the claim then fails and the next
    # free address is tried, so racing allocators end up with distinct addresses.
    for span in free_spans(*usable_bounds(net), used):
        for value in range(span.first, span.last + 1):
            address = to_address(value, net.version)
            if take(address):
                return str(address)
    raise FieldError("subnet", f"No free addresses in {net}.")


def fill_link_ip_thd(cur, link_id: int, subnet_id: int) -> str:
    """Give an address-less link (an AUTO link at deploy) the lowest free address of its subnet."""
    subnet = get_subnet_thd(cur, subnet_id)
    net = parse_cidr(subnet.cidr)
    return _first_free_thd(cur, net, _in_use_thd(cur, subnet, net), lambda address: _claim_thd(
        cur, "UPDATE static_ips SET ip = %s::inet, alloc_type = 'auto' WHERE id = %s AND ip IS NULL",
        (str(address), link_id)))


def release_ips_thd(cur, machine_interface_ids: list[int]) -> None:
    """Free every address allocated to these machine interfaces."""
    if machine_interface_ids:
        cur.execute("DELETE FROM static_ips WHERE machine_interface_id = ANY(%s)", (list(machine_interface_ids),))


def static_ips_thd(cur, subnet_id: int | None = None, machine_interface_ids: list[int] | None = None) -> list[StaticIP]:
    clauses, args = ["ip IS NOT NULL"], []
    if subnet_id is not None:
        clauses.append("subnet_id = %s")
        args.append(subnet_id)
    if machine_interface_ids is not None:
        clauses.append("machine_interface_id = ANY(%s)")
        args.append(list(machine_interface_ids))
    cur.execute(f"SELECT {STATIC_IP_COLUMNS} FROM static_ips WHERE {' AND '.join(clauses)} ORDER BY ip", args)
    return [StaticIP(*r) for r in cur.fetchall()]


def subnet_for_ip_thd(cur, ip: str) -> Subnet | None:
    """The most specific subnet containing ip (longest prefix), or None."""
    address = parse_ip(ip, "ip")
    cur.execute(f"SELECT {SUBNET_COLUMNS} FROM subnets WHERE cidr >>= %s::inet"
                " ORDER BY masklen(cidr) DESC, id LIMIT 1", (str(address),))
    row = cur.fetchone()
    return subnet_row(row) if row else None
