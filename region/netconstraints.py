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
UNDEFINED_SPACE = "undefined"


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
    if value is None or len(value) <= 1:
        return []
    asks: list[InterfaceAsk] = []
    for constraint in value.split(";"):
        label, sep, body = constraint.partition(":")
        if not sep or not body:
            raise ConstraintError(f"Malformed constraint: '{constraint}' (required format: "
                                  f"'<label>:<key>=<value>[,<key2>=<value2>[,...]]')")
        if not LABEL_RE.match(label):
            raise ConstraintError(f"Invalid label name: '{label}' (Must begin with an alphanumeric character, "
                                  f"and include only alphanumeric characters, dashes, and underscores.)")
        if any(a.label == label for a in asks):
            raise ConstraintError(f"Constraint label defined more than once: '{label}'")
        conditions: dict[str, list[str]] = {}
        for pair in body.split(","):
            key, eq, item = pair.partition("=")
            if not eq or not key or not item:
                raise ConstraintError(f"Malformed key/value pair in constraint: '{pair}'")
            if key not in KEYS:
                raise ConstraintError(f"Unknown interfaces constraint: '{key}'")
            conditions.setdefault(key, []).append(item)
        ips = tuple(conditions.pop("ip", []))
        for ip in ips:
            try:
                ipaddress.ip_address(ip)
            except ValueError:
                raise ConstraintError(f"'{ip}' is not an IP address (label {label})") from None
        modes = conditions.pop("mode", [])
        if modes and modes[-1] != "unconfigured":
            raise ConstraintError("The only valid value for 'mode' is 'unconfigured'.")
        asks.append(InterfaceAsk(label, {k: tuple(v) for k, v in conditions.items()}, ips,
                                 modes[-1] if modes else None))
    return asks


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


_POSITIVE: dict[str, Callable[[str, Any], bool]] = {
    "id": lambda v, i: v.isdigit() and int(v) == i.id,
    "name": lambda v, i: v == i.name,
    "type": lambda v, i: v == i.type,
    "fabric": lambda v, i: _specifier(v, i.fabric, ("id", "name")),
    "fabric_class": lambda v, i: i.fabric is not None and v == (i.fabric.class_type or ""),
    "vlan": lambda v, i: _specifier(v, i.vlan, ("id", "name")),
    "vid": lambda v, i: i.vlan is not None and v.isdigit() and int(v) == i.vlan.vid,
    "space": lambda v, i: v == _space_name(i) or (i.space is not None and v == str(i.space.id)),
    "subnet": _in_subnets,
    "subnet_cidr": lambda v, i: any(str(s.cidr) == v for s in i.subnets),
    "tag": lambda v, i: _tags_match(v, list(i.tags)),
    "link_speed": lambda v, i: v.isdigit() and (i.link_speed or 0) >= int(v),
}


def matches(iface, conditions: dict[str, tuple[str, ...]], host_name: str = "") -> bool:
    for key, values in conditions.items():
        negate = key.startswith("not_")
        base = key[4:] if negate else key
        if base == "hostname":
            hit = any(v == host_name for v in values)
        else:
            if base == "id" and not all(v.isdigit() for v in values):
                raise ConstraintError("Interface ID must be numeric.")
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
        for ip in ask.ips:
            subnet = subnet_for_ip(ip)
            if subnet is None:
                raise ConstraintError(f"No subnet contains {ip} (label {ask.label}); create the subnet first.")
            conditions["subnet"] = tuple(conditions.get("subnet", ())) + (f"id:{subnet.id}",)
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
