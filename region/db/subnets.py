"""Subnets and their reserved/dynamic IP ranges.

Everything about addresses is validated here, in Python, so every caller (API,
compose, CLI) gets the same clear FieldError instead of a PostgreSQL cast or
constraint error.
"""

from __future__ import annotations

import ipaddress
from typing import Iterable

from region.db.errors import FieldError, NotFound, Refused
from region.db.network_models import (
    IPRANGE_COLUMNS,
    SUBNET_COLUMNS,
    IPRange,
    Subnet,
    guarded_write,
    subnet_row,
)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
RANGE_TYPES = ("reserved", "dynamic")


# -- pure validation ----------------------------------------------------------------------------

def parse_cidr(text: str, field: str = "cidr") -> Network:
    """'10.0.0.0/24' (host bits are dropped, as MAAS does: '10.0.0.7/24' is 10.0.0.0/24)."""
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise FieldError(field, f"Enter a valid IPv4 or IPv6 network in CIDR notation (got {text!r}).") from None


def parse_ip(text: str, field: str) -> Address:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        raise FieldError(field, f"Enter a valid IPv4 or IPv6 address (got {text!r}).") from None


def network_and_broadcast(net: Network) -> set[Address]:
    """The IPv4 addresses no host may use (none on /31 and /32 links, RFC 3021)."""
    if net.version == 4 and net.prefixlen < 31:
        return {net.network_address, net.broadcast_address}
    return set()


def check_inside(net: Network, ip: Address, field: str) -> None:
    if ip.version != net.version or ip not in net:
        raise FieldError(field, f"{ip} is not inside the subnet {net}.")


def check_gateway(net: Network, gateway: str | None) -> str | None:
    if gateway is None or gateway == "":
        return None
    ip = parse_ip(gateway, "gateway_ip")
    if ip.version != net.version or ip not in net:
        raise FieldError("gateway_ip", f"Gateway IP {ip} must be within CIDR range {net}.")
    if ip in network_and_broadcast(net):
        raise FieldError("gateway_ip", f"Gateway IP {ip} is the network or broadcast address of {net}.")
    return str(ip)


def check_dns_servers(servers: Iterable[str]) -> list[str]:
    return [str(parse_ip(s, "dns_servers")) for s in servers]


def check_range(net: Network, start: str, end: str) -> tuple[Address, Address]:
    first, last = parse_ip(start, "start_ip"), parse_ip(end, "end_ip")
    check_inside(net, first, "start_ip")
    check_inside(net, last, "end_ip")
    if first > last:
        raise FieldError("end_ip", f"End IP {last} is lower than start IP {first}.")
    return first, last


# -- subnets ------------------------------------------------------------------------------------

def list_subnets_thd(cur, vlan_ids: list[int] | None = None) -> list[Subnet]:
    if vlan_ids is None:
        cur.execute(f"SELECT {SUBNET_COLUMNS} FROM subnets ORDER BY id")
    else:
        cur.execute(f"SELECT {SUBNET_COLUMNS} FROM subnets WHERE vlan_id = ANY(%s) ORDER BY id", (vlan_ids,))
    return [subnet_row(r) for r in cur.fetchall()]


def _subnet_where(cur, where: str, value) -> Subnet | None:
    cur.execute(f"SELECT {SUBNET_COLUMNS} FROM subnets WHERE {where}", (value,))
    row = cur.fetchone()
    return subnet_row(row) if row else None


def get_subnet_thd(cur, key: int | str) -> Subnet:
    """By id, CIDR or name; MAAS's "id:", "cidr:" and "name:" prefixes are understood too."""
    text = str(key).strip()
    kind, _, value = text.partition(":") if text.split(":", 1)[0] in ("id", "cidr", "name") else ("", "", text)
    found = None
    if kind in ("", "id") and value.isdigit():
        found = _subnet_where(cur, "id = %s", int(value))
    elif kind in ("", "cidr") and "/" in value:
        try:
            found = _subnet_where(cur, "cidr = %s::cidr", str(ipaddress.ip_network(value, strict=False)))
        except ValueError:
            pass
    if found is None and kind in ("", "name"):
        found = _subnet_where(cur, "name = %s", value)
    if found is None:
        raise NotFound("subnet")
    return found


def _subnet_conflicts(name: str, cidr: str) -> dict[str, FieldError]:
    return {"subnets_name_key": FieldError("name", f"A subnet named {name!r} already exists."),
            "subnets_cidr_key": FieldError("cidr", f"Subnet with this CIDR {cidr} already exists.")}


def create_subnet_thd(cur, *, cidr: str, vlan_id: int, name: str | None = None, gateway_ip: str | None = None,
                      dns_servers: Iterable[str] = (), description: str = "", managed: bool = True,
                      allow_dns: bool = True, allow_proxy: bool = True) -> Subnet:
    net = parse_cidr(cidr)
    gateway = check_gateway(net, gateway_ip)
    dns = check_dns_servers(dns_servers)
    name = name or str(net)  # MAAS names a subnet after its CIDR unless told otherwise
    row = guarded_write(
        cur,
        "INSERT INTO subnets (name, cidr, vlan_id, gateway_ip, dns_servers, description, managed, allow_dns,"
        f" allow_proxy) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING {SUBNET_COLUMNS}",
        (name, str(net), vlan_id, gateway, dns, description, managed, allow_dns, allow_proxy),
        _subnet_conflicts(name, str(net)),
    )
    return subnet_row(row)


SUBNET_UPDATABLE = frozenset({"name", "cidr", "vlan_id", "gateway_ip", "dns_servers", "description", "managed",
                              "allow_dns", "allow_proxy"})


def update_subnet_thd(cur, key: int | str, changes: dict) -> Subnet:
    """Change the given fields; a new CIDR must still hold the gateway, ranges and IPs."""
    unknown = set(changes) - SUBNET_UPDATABLE
    if unknown:
        raise ValueError(f"not updatable: {sorted(unknown)}")
    current = get_subnet_thd(cur, key)
    merged = {**{f: getattr(current, f) for f in SUBNET_UPDATABLE}, **changes}
    net = parse_cidr(merged["cidr"])
    merged["cidr"] = str(net)
    merged["gateway_ip"] = check_gateway(net, merged["gateway_ip"])
    merged["dns_servers"] = check_dns_servers(merged["dns_servers"])
    if "name" not in changes and current.name == current.cidr:
        merged["name"] = str(net)  # a name that was the CIDR follows the CIDR
    if merged["cidr"] != current.cidr:
        _touch_subnet_thd(cur, current.id)
        _check_contents_fit(cur, current.id, net)
    columns = sorted(SUBNET_UPDATABLE)
    row = guarded_write(
        cur,
        f"UPDATE subnets SET {', '.join(f'{c} = %s' for c in columns)} WHERE id = %s RETURNING {SUBNET_COLUMNS}",
        (*(merged[c] for c in columns), current.id),
        _subnet_conflicts(merged["name"], merged["cidr"]),
    )
    return subnet_row(row)


def _check_contents_fit(cur, subnet_id: int, net: Network) -> None:
    cur.execute("SELECT host(start_ip), host(end_ip) FROM ip_ranges WHERE subnet_id = %s"
                " AND NOT (start_ip <<= %s::cidr AND end_ip <<= %s::cidr) ORDER BY start_ip",
                (subnet_id, str(net), str(net)))
    outside = [f"{a}-{b}" for a, b in cur.fetchall()]
    cur.execute("SELECT host(ip) FROM static_ips WHERE subnet_id = %s AND NOT (ip <<= %s::cidr) ORDER BY ip",
                (subnet_id, str(net)))
    outside += [r[0] for r in cur.fetchall()]
    if outside:
        raise FieldError("cidr", f"{net} does not contain these ranges or allocated IPs of the subnet: "
                                 f"{', '.join(outside)}.")


def delete_subnet_thd(cur, key: int | str) -> Subnet:
    """Its ranges go with it; addresses machines still hold block it (unlike MAAS, which
    drops them silently)."""
    subnet = get_subnet_thd(cur, key)
    cur.execute("SELECT host(s.ip), m.hostname FROM static_ips s JOIN machine_interfaces i"
                " ON i.id = s.machine_interface_id JOIN machines m ON m.id = i.machine_id"
                " WHERE s.subnet_id = %s ORDER BY s.ip", (subnet.id,))
    held = cur.fetchall()
    if held:
        listed = ", ".join(f"{ip} ({hostname})" for ip, hostname in held[:5])
        more = f" and {len(held) - 5} more" if len(held) > 5 else ""
        raise Refused(f"Subnet {subnet.cidr} has addresses in use by machines: {listed}{more}; "
                      f"delete or release those machines first.")
    cur.execute("DELETE FROM subnets WHERE id = %s", (subnet.id,))
    return subnet


def subnets_on_vlans_thd(cur, vlan_ids: list[int]) -> list[str]:
    """CIDRs of the subnets on these VLANs (what blocks deleting them)."""
    cur.execute("SELECT text(cidr) FROM subnets WHERE vlan_id = ANY(%s) ORDER BY cidr", (vlan_ids,))
    return [r[0] for r in cur.fetchall()]


def _touch_subnet_thd(cur, subnet_id: int) -> None:
    """A no-op UPDATE of the subnet row: under REPEATABLE READ two transactions that both touch
    it cannot both commit, so range checks done after this cannot miss a concurrent write."""
    cur.execute("UPDATE subnets SET id = id WHERE id = %s", (subnet_id,))


# -- IP ranges ----------------------------------------------------------------------------------

def list_ranges_thd(cur, subnet_id: int | None = None) -> list[IPRange]:
    where, args = ("WHERE subnet_id = %s", (subnet_id,)) if subnet_id is not None else ("", ())
    cur.execute(f"SELECT {IPRANGE_COLUMNS} FROM ip_ranges {where} ORDER BY subnet_id, start_ip", args)
    return [IPRange(*r) for r in cur.fetchall()]


def get_range_thd(cur, range_id: int | str) -> IPRange:
    if not str(range_id).isdigit():
        raise NotFound("IP range")
    cur.execute(f"SELECT {IPRANGE_COLUMNS} FROM ip_ranges WHERE id = %s", (int(range_id),))
    row = cur.fetchone()
    if row is None:
        raise NotFound("IP range")
    return IPRange(*row)


def _check_range_thd(cur, subnet: Subnet, type_: str, start: str, end: str, exclude_id: int | None):
    if type_ not in RANGE_TYPES:
        raise FieldError("type", f"Select one of {', '.join(RANGE_TYPES)}.")
    first, last = check_range(parse_cidr(subnet.cidr), start, end)
    _touch_subnet_thd(cur, subnet.id)
    cur.execute("SELECT type, host(start_ip), host(end_ip) FROM ip_ranges WHERE subnet_id = %s"
                " AND id IS DISTINCT FROM %s AND start_ip <= %s::inet AND end_ip >= %s::inet",
                (subnet.id, exclude_id, str(last), str(first)))
    clash = cur.fetchone()
    if clash:
        raise FieldError("start_ip", f"Requested {type_} range {first}-{last} conflicts with the existing "
                                     f"{clash[0]} range {clash[1]}-{clash[2]}.")
    if type_ == "dynamic":  # DHCP would hand out addresses that are already someone's
        cur.execute("SELECT host(ip) FROM static_ips WHERE subnet_id = %s AND ip BETWEEN %s::inet AND %s::inet"
                    " ORDER BY ip LIMIT 5", (subnet.id, str(first), str(last)))
        taken = [r[0] for r in cur.fetchall()]
        if subnet.gateway_ip and first <= ipaddress.ip_address(subnet.gateway_ip) <= last:
            taken.insert(0, f"{subnet.gateway_ip} (the gateway)")
        if taken:
            raise FieldError("start_ip", f"A dynamic range cannot include addresses in use: {', '.join(taken)}.")
    return str(first), str(last)


def create_range_thd(cur, subnet_key: int | str, type_: str, start_ip: str, end_ip: str,
                     comment: str = "") -> IPRange:
    subnet = get_subnet_thd(cur, subnet_key)
    first, last = _check_range_thd(cur, subnet, type_, start_ip, end_ip, None)
    cur.execute(f"INSERT INTO ip_ranges (subnet_id, type, start_ip, end_ip, comment) VALUES (%s, %s, %s, %s, %s)"
                f" RETURNING {IPRANGE_COLUMNS}", (subnet.id, type_, first, last, comment))
    return IPRange(*cur.fetchone())


def update_range_thd(cur, range_id: int | str, *, subnet_key: int | str | None = None, type_: str | None = None,
                     start_ip: str | None = None, end_ip: str | None = None,
                     comment: str | None = None) -> IPRange:
    current = get_range_thd(cur, range_id)
    subnet = get_subnet_thd(cur, current.subnet_id if subnet_key is None else subnet_key)
    new_type = current.type if type_ is None else type_
    first, last = _check_range_thd(cur, subnet, new_type, start_ip or current.start_ip,
                                   end_ip or current.end_ip, current.id)
    cur.execute(f"UPDATE ip_ranges SET subnet_id = %s, type = %s, start_ip = %s, end_ip = %s, comment = %s"
                f" WHERE id = %s RETURNING {IPRANGE_COLUMNS}",
                (subnet.id, new_type, first, last, current.comment if comment is None else comment, current.id))
    return IPRange(*cur.fetchone())


def delete_range_thd(cur, range_id: int | str) -> IPRange:
    found = get_range_thd(cur, range_id)
    cur.execute("DELETE FROM ip_ranges WHERE id = %s", (found.id,))
    return found


def vlan_has_subnets_error(cidrs: list[str], what: str) -> Refused:
    return Refused(f"Cannot delete {what}: these subnets are still on it: {', '.join(cidrs)}. "
                   "Delete them or move them to another VLAN first.")
