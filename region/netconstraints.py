"""The `interfaces` constraint of compose and allocate: parsing and matching.

Syntax (MAAS): ``label:key=value[,key=value…][;label:…]``, e.g.
``eth0:space=storage;eth1:subnet=10.20.0.0/24,ip=10.20.0.50``.  Each label
asks for one VM NIC on a host interface that satisfies every condition.
Pure functions over the host's interfaces as `region.db.networks` describes
them (attributes: id, name, type, numa_node, sriov_max_vfs, link_speed, tags,
vlan, fabric, space, subnets).
"""

from __future__ import annotations

import ipaddress
import re
import zlib
from typing import Any, Callable, Iterable

import attrs

LABEL_RE = re.compile(r"^[a-zA-Z0-9]+[a-zA-Z0-9_-]*$")
KEYS = frozenset({
    "id", "not_id", "fabric", "not_fabric", "fabric_class", "not_fabric_class", "ip", "not_ip", "mode",
    "name", "not_name", "hostname", "not_hostname", "subnet", "not_subnet", "space", "not_space",
    "subnet_cidr", "not_subnet_cidr", "type", "vlan", "not_vlan", "vid", "not_vid", "tag", "not_tag",
    "link_speed",
})
WHOLE_NUMBER_KEYS = frozenset({"id", "not_id", "vid", "not_vid", "link_speed"})
UNDEFINED_SPACE = "undefined"
# Far above any real VM; they keep a request's parsing and matching cheap.
MAX_INTERFACES = 64
MAX_LENGTH = 8192
_WHOLE_NUMBER = re.compile(r"[0-9]{1,18}")  # ASCII only: int() also reads other scripts' digits


class ConstraintError(ValueError):
    """The constraint string is malformed or cannot be met; str() is the user message."""


@attrs.frozen
class InterfaceAsk:
    label: str
    conditions: dict[str, tuple[str, ...]]
    ips: tuple[str, ...] = ()
    mode: str | None = None

    @property
    def ifname(self) -> str:
        return ifname_for_label(self.label)


def ifname_for_label(label: str) -> str:
    """'0' -> 'eth0'; names over 15 bytes (the kernel's limit) are shortened stably."""
    if label.isdigit():
        return f"eth{label}"
    raw = label.encode()
    if len(raw) <= 15:
        return label
    return f"eth-{zlib.crc32(raw) & 0xfffff:05x}-{raw[-5:].decode(errors='ignore')}"


def parse_interfaces(value: str | None) -> list[InterfaceAsk]:
    """The asks in the order given; linear in the length of `value`, which is bounded."""
    if value is None or len(value) <= 1:
        return []
    if len(value) > MAX_LENGTH:
        raise ConstraintError(f"Ensure this value has at most {MAX_LENGTH} characters (it has {len(value)}).")
    constraints = value.split(";")
    if len(constraints) > MAX_INTERFACES:
        raise ConstraintError(f"Ensure at most {MAX_INTERFACES} interfaces are asked for "
                              f"(this asks for {len(constraints)}).")
    asks: dict[str, InterfaceAsk] = {}  # by label: a repeated label is found at once
    for constraint in constraints:
        label, sep, body = constraint.partition(":")
        if not sep or not body:
            raise ConstraintError(f"Malformed constraint: '{constraint}' (required format: "
                                  f"'<label>:<key>=<value>[,<key2>=<value2>[,...]]')")
        if not LABEL_RE.match(label):
            raise ConstraintError(f"Invalid label name: '{label}' (Must begin with an alphanumeric character, "
                                  f"and include only alphanumeric characters, dashes, and underscores.)")
        if label in asks:
            raise ConstraintError(f"Constraint label defined more than once: '{label}'")
        asks[label] = _ask(label, body)
    return list(asks.values())


def _ask(label: str, body: str) -> InterfaceAsk:
    conditions: dict[str, list[str]] = {}
    for pair in body.split(","):
        key, eq, item = pair.partition("=")
        if not eq or not key or not item:
            raise ConstraintError(f"Malformed key/value pair in constraint: '{pair}'")
        if key not in KEYS:
            raise ConstraintError(f"Unknown interfaces constraint: '{key}'")
        if key in WHOLE_NUMBER_KEYS and not _WHOLE_NUMBER.fullmatch(item):
            raise ConstraintError("Interface ID must be numeric." if key in ("id", "not_id") else
                                  f"'{key}' must be a whole number (label {label}).")
        conditions.setdefault(key, []).append(item)
    ips = tuple(conditions.pop("ip", []))
    for ip in ips + tuple(conditions.get("not_ip", ())):
        if _address(ip) is None:
            raise ConstraintError(f"'{ip}' is not an IP address (label {label})")
    modes = conditions.pop("mode", [])
    if modes and modes[-1] != "unconfigured":
        raise ConstraintError("The only valid value for 'mode' is 'unconfigured'.")
    return InterfaceAsk(label, {k: tuple(v) for k, v in conditions.items()}, ips, modes[-1] if modes else None)


# -- matching ------------------------------------------------------------------------------

def _specifier(value: str, obj: Any, fields: Iterable[str]) -> bool:
    """MAAS object specifiers: 'id:5', 'name:x', 'cidr:…', 'vid:7', or a bare id/name/cidr."""
    if obj is None:
        return False
    kind, sep, rest = value.partition(":")
    if sep and kind in ("id", "name", "cidr", "vid"):
        return str(getattr(obj, kind, None)) == rest
    return any(str(getattr(obj, f, None)) == value for f in fields)


def _space_name(iface) -> str:
    return iface.space.name if iface.space is not None else UNDEFINED_SPACE


def _tags_match(value: str, tags: list[str]) -> bool:
    return all(t in tags for t in value.split("&&"))


def _in_subnets(value: str, iface) -> bool:
    return any(_specifier(value, s, ("id", "cidr", "name")) for s in iface.subnets)


def _address(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


def _on_subnet_of(value: str, iface) -> bool:
    """Whether one of the interface's subnets holds the address `value`."""
    ip = _address(value)
    return ip is not None and any(ip in ipaddress.ip_network(s.cidr, strict=False) for s in iface.subnets)


_POSITIVE: dict[str, Callable[[str, Any], bool]] = {
    "id": lambda v, i: int(v) == i.id,
    "name": lambda v, i: v == i.name,
    "type": lambda v, i: v == i.type,
    "fabric": lambda v, i: _specifier(v, i.fabric, ("id", "name")),
    "fabric_class": lambda v, i: i.fabric is not None and v == (i.fabric.class_type or ""),
    "vlan": lambda v, i: _specifier(v, i.vlan, ("id", "name")),
    "vid": lambda v, i: i.vlan is not None and int(v) == i.vlan.vid,
    "space": lambda v, i: v == _space_name(i) or (i.space is not None and v == str(i.space.id)),
    "subnet": _in_subnets,
    "ip": _on_subnet_of,  # only `not_ip` gets here: `ip=` asks for a static address (see resolve)
    "subnet_cidr": lambda v, i: any(str(s.cidr) == v for s in i.subnets),
    "tag": lambda v, i: _tags_match(v, list(i.tags)),
    "link_speed": lambda v, i: (i.link_speed or 0) >= int(v),
}


def matches(iface, conditions: dict[str, tuple[str, ...]], host_name: str = "") -> bool:
    """Whether `iface` meets every condition (as `parse_interfaces` checked them)."""
    for key, values in conditions.items():
        negate = key.startswith("not_")
        base = key[4:] if negate else key
        if base == "hostname":
            hit = any(v == host_name for v in values)
        else:
            hit = any(_POSITIVE[base](v, iface) for v in values)
        if hit == negate:
            return False
    return True


def attach_type(iface) -> str:
    """How a VM NIC attaches to this host interface."""
    if iface.type == "bridge":
        return "bridge"
    if iface.sriov_max_vfs > 0:
        return "sriov"
    return "macvlan"


def _preference(iface) -> tuple:
    # A bridge first, then a bond, then the newest interface (as MAAS picks).
    return (iface.type == "bridge", iface.type == "bond", iface.id)


@attrs.frozen
class Resolved:
    ask: InterfaceAsk
    iface: Any  # the host interface the NIC attaches to


def resolve(asks: list[InterfaceAsk], host_ifaces: list, host_name: str,
            subnet_for_ip: Callable[[str], Any]) -> list[Resolved]:
    """Pick a host interface for each label; an `ip=` pins the label to that IP's subnet."""
    out = []
    for ask in asks:
        conditions = dict(ask.conditions)
        pinned_subnets = []
        for ip in ask.ips:
            subnet = subnet_for_ip(ip)
            if subnet is None:
                raise ConstraintError(f"No subnet contains {ip} (label {ask.label}); create the subnet first.")
            pinned_subnets.append(f"id:{subnet.id}")
        if pinned_subnets:
            conditions["subnet"] = conditions.get("subnet", ()) + tuple(pinned_subnets)
        found = [i for i in host_ifaces if matches(i, conditions, host_name)]
        if not found:
            raise ConstraintError(f"This VM host does not match the specified networks: no host interface "
                                  f"satisfies '{ask.label}' ({_describe(conditions)}); the host has "
                                  f"{_inventory(host_ifaces)}.")
        out.append(Resolved(ask, max(found, key=_preference)))
    return out


def _describe(conditions: dict[str, tuple[str, ...]]) -> str:
    return ", ".join(f"{k}={'|'.join(v)}" for k, v in conditions.items()) or "any"


def _inventory(host_ifaces: list) -> str:
    if not host_ifaces:
        return "no interfaces"
    return ", ".join(f"{i.name} ({i.type}, vlan {i.vlan.vid if i.vlan else '-'}, space {_space_name(i)}, "
                     f"subnets {'/'.join(str(s.cidr) for s in i.subnets) or '-'})" for i in host_ifaces)
