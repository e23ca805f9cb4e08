"""Allocation's matching rules, pure: which machines and VM hosts meet the constraints.

A Ready machine meets `Constraints` when every filter holds and its own disks and NICs
can be labelled for the storage and interfaces constraints (`match_machine`).  A VM
host is a candidate when the host-level filters hold (`host_filter_reason`); the
candidates that fit are ranked by the room left after the VM (`rank`): pack (least
left first) or spread (most left first).
"""

from __future__ import annotations

import math
from typing import Any

import attrs

from common.models import VIRTUAL_MACHINE
from region import placement
from region.db import hosts, machines
from region.netconstraints import ConstraintError, InterfaceAsk, matches
from region.services.compose_request import ComposeAsk, StorageAsk, parse_storage

MIB = 1024 * 1024
DEFAULT_MEMORY_MIB = 2048
DEFAULT_STORAGE = "root:8"
NETWORK_KEYS = ("subnets", "vlans", "fabrics", "fabric_classes")


@attrs.frozen
class Constraints:
    name: str | None = None
    system_id: str | None = None
    arch: tuple[str, ...] = ()
    cpu_count: float | None = None
    mem: float | None = None  # MiB
    tags: tuple[str, ...] = ()
    not_tags: tuple[str, ...] = ()
    zone: str | None = None
    not_in_zone: tuple[str, ...] = ()
    pool: str | None = None
    not_in_pool: tuple[str, ...] = ()
    pod: str | None = None
    not_pod: tuple[str, ...] = ()
    pod_type: str | None = None
    not_pod_type: tuple[str, ...] = ()
    storage: tuple[StorageAsk, ...] = ()
    interfaces: tuple[InterfaceAsk, ...] = ()
    networks: dict[str, tuple[str, ...]] = attrs.field(factory=dict)  # subnets, not_vlans, ... → specifiers
    link_speed: int | None = None
    agent_name: str = ""
    comment: str = ""
    dry_run: bool = False
    # vmyard (MAAS has none): "virtual-machine" or "container"; None: a VM, or any type when
    # the machine is named (system_id/name).
    instance_type: str | None = None

    @property
    def wanted_type(self) -> str | None:
        """The instance type a machine must be (None: any)."""
        named = self.system_id is not None or self.name is not None
        return self.instance_type or (None if named else VIRTUAL_MACHINE)


@attrs.frozen
class Match:
    """How a machine meets the labelled constraints: label → ids on the machine."""

    interfaces: dict[str, list[int]]
    storage: dict[str, list[int]]

    def as_json(self) -> dict:
        return {"interfaces": self.interfaces, "storage": self.storage}


# -- pure matching ---------------------------------------------------------------------------

def arch_matches(wanted: tuple[str, ...], arch: str) -> bool:
    """'amd64' matches 'amd64/generic'; a full 'arch/subarch' must be equal."""
    return not wanted or any(w == arch or ("/" not in w and arch.split("/")[0] == w) for w in wanted)


def _subnet_spec(value: str, iface) -> bool:
    kind, sep, rest = value.partition(":")
    if sep and kind == "space":
        return matches(iface, {"space": (rest,)})
    if sep and kind == "vlan":
        return matches(iface, {"vlan": (rest,)})
    if sep and kind == "ip":
        return matches(iface, {"ip": (rest,)})
    return matches(iface, {"subnet": (value,)})


_NETWORK_TESTS = {
    "subnets": _subnet_spec,
    "vlans": lambda v, i: matches(i, {"vlan": (v,)}),
    "fabrics": lambda v, i: matches(i, {"fabric": (v,)}),
    "fabric_classes": lambda v, i: matches(i, {"fabric_class": (v,)}),
}


def network_shortfalls(c: Constraints, ifaces: list) -> list[str]:
    """Machine-level network constraints against the host interfaces its NICs attach to:
    each positive specifier is met by some NIC, no NIC meets a negative one."""
    out = []
    for key in NETWORK_KEYS:
        test = _NETWORK_TESTS[key]
        for value in c.networks.get(key, ()):
            if not any(test(value, i) for i in ifaces):
                out.append(f"no NIC on {key}={value}")
        for value in c.networks.get("not_" + key, ()):
            if any(test(value, i) for i in ifaces):
                out.append(f"a NIC is on not_{key}={value}")
    if c.link_speed is not None and not any((i.link_speed or 0) >= c.link_speed for i in ifaces):
        out.append(f"no NIC with link_speed >= {c.link_speed}")
    return out


def _assign(options: list[list[int]]) -> list[int] | None:
    """A distinct option for every ask (`options[i]`: what ask i may take), or None.

    A bipartite matching by augmenting paths (Kuhn), O(asks × options): trying choices in
    turn, as this once did, is exponential when the asks outnumber what fits them."""
    holder: dict[int, int] = {}  # option -> the ask holding it
    for ask in range(len(options)):
        if not _augment(ask, options, holder, set()):
            return None
    taken = {ask: option for option, ask in holder.items()}
    return [taken[ask] for ask in range(len(options))]


def _augment(ask: int, options: list[list[int]], holder: dict[int, int], seen: set[int]) -> bool:
    """Give `ask` an option, moving earlier asks to other options if need be."""
    for option in options[ask]:
        if option not in seen:
            seen.add(option)
            if option not in holder or _augment(holder[option], options, holder, seen):
                holder[option] = ask
                return True
    return False


def match_machine(m: machines.Machine, c: Constraints, *, host: hosts.VMHost, zone: str, pool: str,
                  host_ifaces: dict[str, Any]) -> tuple[Match | None, str]:
    """Whether machine `m` meets `c`: (Match, "") or (None, why not).  `host_ifaces` are its
    host's interfaces (with their networks) by name; a NIC's network is its host interface's."""
    checks = [
        (c.system_id is None or m.system_id == c.system_id, f"system_id is not {c.system_id}"),
        (c.name is None or c.name in (m.hostname, f"{m.hostname}.maas"), f"hostname is not {c.name}"),
        (arch_matches(c.arch, m.architecture), f"architecture {m.architecture} is not {'/'.join(c.arch)}"),
        (c.cpu_count is None or m.cpu_count >= c.cpu_count, f"{m.cpu_count} cores < {c.cpu_count}"),
        (c.mem is None or m.memory / MIB >= c.mem, f"{m.memory // MIB} MiB memory < {c.mem}"),
        (set(c.tags) <= set(m.tags), f"lacks tags {', '.join(sorted(set(c.tags) - set(m.tags)))}"),
        (not set(c.not_tags) & set(m.tags), "has an excluded tag"),
        (c.zone is None or zone == c.zone, f"in zone {zone}"),
        (zone not in c.not_in_zone, f"in excluded zone {zone}"),
        (c.pool is None or pool == c.pool, f"in pool {pool}"),
        (pool not in c.not_in_pool, f"in excluded pool {pool}"),
        (c.pod is None or host.name == c.pod, f"on VM host {host.name}"),
        (host.name not in c.not_pod, f"on excluded VM host {host.name}"),
        (c.pod_type is None or host.type == c.pod_type, f"on a {host.type} VM host"),
        (host.type not in c.not_pod_type, f"on an excluded {host.type} VM host"),
        (c.wanted_type in (None, m.instance_type), f"is a {m.instance_type}, not a {c.wanted_type}"),
    ]
    failed = [why for ok, why in checks if not ok]
    if failed:
        return None, "; ".join(failed)
    storage = _match_storage(m, c.storage)
    if storage is None:
        return None, "its disks do not meet the storage constraint"
    nic_ifaces = {n.id: host_ifaces.get(n.attach_name or "") for n in m.interfaces}
    options = []
    for ask in c.interfaces:
        try:
            options.append([n.id for n in m.interfaces if nic_ifaces[n.id] is not None
                            and matches(nic_ifaces[n.id], ask.conditions, host.name)
                            and set(ask.ips) <= {ip for ip, _ in n.ips}])
        except ConstraintError as e:
            return None, str(e)
    chosen = _assign(options)
    if chosen is None:
        return None, "its NICs do not meet the interfaces constraint"
    shortfalls = network_shortfalls(c, [i for i in nic_ifaces.values() if i is not None])
    if shortfalls:
        return None, "; ".join(shortfalls)
    return Match({a.label: [n] for a, n in zip(c.interfaces, chosen)}, storage), ""


def _match_storage(m: machines.Machine, asks: tuple[StorageAsk, ...]) -> dict[str, list[int]] | None:
    """The first ask is the boot disk (the machine's first); a disk meets an ask when it is at
    least as big and every tag names its storage pool (vmyard's disk tags are their pools)."""
    if not asks:
        return {}
    disks = list(m.disks)
    options = [[d.id for i, d in enumerate(disks) if (i == 0) == (n == 0) and d.size >= a.size
                and set(a.tags) <= {d.pool}] for n, a in enumerate(asks)]
    chosen = _assign(options)
    return None if chosen is None else {a.label: [d] for a, d in zip(asks, chosen)}


def machine_cost(m: machines.Machine) -> tuple:
    return (m.cpu_count, m.memory, sum(d.size for d in m.disks), m.id)


# -- hosts: filter, fit, rank -----------------------------------------------------------------

@attrs.frozen
class HostOption:
    host_id: int
    name: str
    reason: str | None  # why it cannot take the VM; None: it can
    ask: ComposeAsk | None = None
    free_memory: float = 0.0  # bytes left after the VM
    free_cores: float = 0.0


def host_filter_reason(c: Constraints, host: hosts.VMHost, zone: str, pool: str) -> str | None:
    """Why a host is not a candidate at all (None: it is one)."""
    checks = [
        (host.state == "ready", f"not ready ({host.state})"),
        ("composable" in host.capabilities, "cannot compose VMs"),
        (c.zone is None or zone == c.zone, f"in zone {zone}, not {c.zone}"),
        (zone not in c.not_in_zone, f"in excluded zone {zone}"),
        (c.pool is None or pool == c.pool, f"in pool {pool}, not {c.pool}"),
        (pool not in c.not_in_pool, f"in excluded pool {pool}"),
        (c.pod is None or host.name == c.pod, f"not {c.pod}"),
        (host.name not in c.not_pod, "excluded by not_pod"),
        (c.pod_type is None or host.type == c.pod_type, f"of type {host.type}"),
        (host.type not in c.not_pod_type, f"of excluded type {host.type}"),
        (set(c.tags) <= set(host.tags), f"lacks tags {', '.join(sorted(set(c.tags) - set(host.tags)))}"),
        (not set(c.not_tags) & set(host.tags), "has an excluded tag"),
        (any(arch_matches(c.arch, a) for a in host.architectures) or not c.arch,
         f"has no {'/'.join(c.arch)} architecture (it has {', '.join(host.architectures) or 'none'})"),
    ]
    failed = [why for ok, why in checks if not ok]
    return "; ".join(failed) if failed else None


def free_after(capacity: placement.HostCapacity, vms: list[placement.Allocation],
               request: placement.Request) -> tuple[float, float]:
    general = capacity.memory - sum(n.hugepage_bytes for n in capacity.numa)
    memory = general * capacity.memory_ratio - sum(v.memory for v in vms if not v.hugepages_backed)
    cores = capacity.cores * capacity.cpu_ratio - sum(v.cores for v in vms)
    return memory - request.memory, cores - request.cores


def rank(options: list[HostOption], policy: str = "pack") -> list[HostOption]:
    """The fitting hosts in the order to try: pack (least left first) or spread (most left first)."""
    fitting = [o for o in options if o.reason is None]
    sign = -1 if policy == "spread" else 1
    return sorted(fitting, key=lambda o: (sign * o.free_memory, sign * o.free_cores, o.host_id))


def compose_ask(c: Constraints, host: hosts.VMHost) -> ComposeAsk:
    """What to compose for `c` on `host` (MAAS: the minimum of each constraint)."""
    arch = next((a for a in host.architectures if arch_matches(c.arch, a)), None)
    default_storage = parse_storage(DEFAULT_STORAGE)
    storage = c.storage or default_storage
    if storage[0].size == 0:  # a root disk of any size: composed at the default size
        storage = (attrs.evolve(storage[0], size=default_storage[0].size), *storage[1:])
    return ComposeAsk(
        cores=max(1, math.ceil(c.cpu_count or 1)),
        memory=int((c.mem or DEFAULT_MEMORY_MIB) * MIB), pinned_cores=(), hugepages_backed=False,
        architecture=arch or "amd64/generic", hostname=None, zone=str(host.zone_id), pool=None,
        storage=storage, interfaces=c.interfaces,
        instance_type=c.instance_type or VIRTUAL_MACHINE)



def composed_match(m: machines.Machine, c: Constraints) -> Match:
    """A VM composed for `c`: each interface label is the NIC named for it, each disk its label."""
    nics = {n.name: n.id for n in m.interfaces}
    disks = {d.name: d.id for d in m.disks}
    return Match({a.label: [nics[a.ifname]] for a in c.interfaces if a.ifname in nics},
                 {s.label: [disks[s.label]] for s in c.storage if s.label in disks})
