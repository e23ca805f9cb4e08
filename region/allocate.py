"""Allocation: which machine a `machines/?op=allocate` gets, and where a VM is composed for it.

1. A **Ready** machine that nobody owns and that matches every constraint is
   preferred; among several, the cheapest (fewest cores, then memory, then
   disk) is taken, so bigger machines stay available.  It is claimed with a
   conditional UPDATE, so concurrent allocations never share a machine.
2. If none matches and the caller named no machine (`system_id`/`name`), a
   VM is **composed on demand** (MAAS's dynamic compose) on a VM host that
   passes the host-level filters (zone, pool, pod, pod_type, pod tags,
   architecture) and can hold it: the placement rules of `region.placement`
   over the host's recorded capacity and current VMs, plus the interfaces
   constraint resolved against the host's interfaces, all read in one
   transaction.
3. Host policy: **pack**: the fitting host with the least memory left
   after the VM (then the fewest cores left, then the lowest id) goes first,
   keeping big hosts free for big VMs.  `spread` (the most left first) is
   chosen by the region setting `allocation_policy = "spread"` when the
   configuration has it.  Hosts that cannot overcommit are not preferred:
   the free amounts already count the overcommit ratios.
4. The compose itself re-checks under the host row lock
   (`region.compose.reserve_thd`); if a concurrent compose took the room
   (ComposeRefused) or the host failed, the next candidate is tried.
5. The VM is composed `dynamic` (deleted again on release) and owned by the
   caller, then marked Allocated.

Nothing fits: `NoMatch` (HTTP 409, no Retry-After), naming every host and
what it lacks.  Only driver failures on every fitting host give `Unavailable`.
"""

from __future__ import annotations

import ipaddress
import math
from typing import Any

import attrs

from common import hosterrors
from region import compose, placement
from region.api.compose_form import ComposeAsk, StorageAsk, parse_storage
from region.db import allocations, events, hosts, machines, named, networks
from region.db.errors import FieldError
from region.netconstraints import ConstraintError, InterfaceAsk, matches, resolve
from region.rpc import NoRackConnected

MIB = 1024 * 1024
DEFAULT_MEMORY_MIB = 2048
DEFAULT_STORAGE = "root:8"
NETWORK_KEYS = ("subnets", "vlans", "fabrics", "fabric_classes")


class NoMatch(Exception):
    """Nothing matches; str() says why, per machine or host (HTTP 409)."""


class Unavailable(Exception):
    """Hosts that fit could not be reached or failed to compose (HTTP 503)."""


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
        try:
            ip = ipaddress.ip_address(rest)
        except ValueError:
            return False
        return any(ip in ipaddress.ip_network(s.cidr, strict=False) for s in iface.subnets)
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


def _assign(asks: list, options: list[list[int]], taken: frozenset = frozenset()) -> list[int] | None:
    """One distinct option per ask (backtracking; the lists are tiny)."""
    if not asks:
        return []
    for choice in options[0]:
        if choice not in taken:
            rest = _assign(asks[1:], options[1:], taken | {choice})
            if rest is not None:
                return [choice, *rest]
    return None


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
    chosen = _assign(list(c.interfaces), options)
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
    chosen = _assign(list(asks), options)
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
    return ComposeAsk(
        cores=max(1, math.ceil(c.cpu_count or 1)),
        memory=int((c.mem or DEFAULT_MEMORY_MIB) * MIB), pinned_cores=(), hugepages_backed=False,
        architecture=arch or "amd64/generic", hostname=None, zone=str(host.zone_id), pool=None,
        storage=c.storage or parse_storage(DEFAULT_STORAGE), interfaces=c.interfaces)


def survey_thd(cur, c: Constraints) -> list[HostOption]:
    """Every VM host, with why it cannot take the VM or how much it would have left."""
    zones = {z.id: z.name for z in named.list_thd(cur, named.ZONES)}
    pools = {p.id: p.name for p in named.list_thd(cur, named.RESOURCE_POOLS)}
    out = []
    for host in hosts.list_thd(cur):
        reason = host_filter_reason(c, host, zones[host.zone_id], pools[host.pool_id])
        if reason is not None:
            out.append(HostOption(host.id, host.name, reason))
            continue
        ask = compose_ask(c, host)
        capacity, vms = compose.capacity_thd(cur, host)
        pool_names = [p.name for p in host.storage_pools]
        request = placement.Request(cores=ask.cores, memory=ask.memory, disks=tuple(
            placement.DiskRequest(s.size, next((t for t in s.tags if t in pool_names), None)) for s in ask.storage))
        problems: list[str] = []
        try:
            placement.place(capacity, vms, request)
        except placement.DoesNotFit as e:
            problems += e.shortfalls
        except placement.InvalidRequest as e:
            problems.append(str(e))
        try:
            ifaces = networks.host_interface_networks_thd(cur, host.id)
            resolved = resolve(list(ask.interfaces), ifaces, host.name, lambda ip: networks.subnet_for_ip_thd(cur, ip))
            problems += network_shortfalls(c, [r.iface for r in resolved])
        except ConstraintError as e:
            problems.append(str(e))
        memory, cores = free_after(capacity, vms, request)
        out.append(HostOption(host.id, host.name, "; ".join(problems) or None, ask, memory, cores))
    return out


# -- the allocation itself --------------------------------------------------------------------

@attrs.frozen
class Allocated:
    machine: machines.Machine
    match: Match
    composed_on: str | None = None  # the VM host, when composed for this allocation


def ready_matches_thd(cur, c: Constraints) -> tuple[list[tuple[machines.Machine, Match]], list[str]]:
    """Available machines meeting `c`, cheapest first; and why the named ones do not."""
    zones = {z.id: z.name for z in named.list_thd(cur, named.ZONES)}
    pools = {p.id: p.name for p in named.list_thd(cur, named.RESOURCE_POOLS)}
    by_host = {h.id: h for h in hosts.list_thd(cur)}
    ifaces: dict[int, dict] = {}
    found, why = [], []
    named_only = c.system_id is not None or c.name is not None
    for m in sorted(machines.list_thd(cur), key=machine_cost):
        if named_only and m.system_id != c.system_id and c.name not in (m.hostname, f"{m.hostname}.maas"):
            continue
        if m.status != "ready" or m.owner_id is not None:
            if named_only:
                why.append(f"machine {m.hostname} ({m.system_id}) is not available "
                           f"(status {m.status}{', owned' if m.owner_id is not None else ''})")
            continue
        if m.host_id not in ifaces:
            ifaces[m.host_id] = {i.name: i for i in networks.host_interface_networks_thd(cur, m.host_id)}
        match, reason = match_machine(m, c, host=by_host[m.host_id], zone=zones[m.zone_id],
                                      pool=pools[m.pool_id], host_ifaces=ifaces[m.host_id])
        if match is not None:
            found.append((m, match))
        elif named_only:
            why.append(f"machine {m.hostname} ({m.system_id}) does not match: {reason}")
    if named_only and not why and not found:
        why.append(f"no machine is named {c.system_id or c.name}")
    return found, why


def _allocated_thd(cur, system_id: str, c: Constraints, user, how: str) -> machines.Machine:
    m = machines.get_thd(cur, system_id)
    text = f"allocated {m.hostname} to {user.username} ({how})" + (f": {c.comment}" if c.comment else "")
    events.record_thd(cur, "MACHINE_ALLOCATED", text, level="AUDIT", username=user.username,
                      object_type="machine", object_id=m.system_id)
    return m


async def allocate(region, c: Constraints, user, policy: str = "pack") -> Allocated:
    found, why = await region.db.run(ready_matches_thd, c)
    for m, match in found:
        if c.dry_run:
            return Allocated(m, match)

        def claim_thd(cur, m=m):
            if allocations.claim_thd(cur, m.id, user.id, c.agent_name):
                return _allocated_thd(cur, m.system_id, c, user, "a Ready machine")
            return None

        claimed = await region.db.run(claim_thd)
        if claimed is not None:
            return Allocated(claimed, match)
    if c.system_id is not None or c.name is not None:
        raise NoMatch("No available machine matches constraints: " + "; ".join(why) + ".")
    options = await region.db.run(survey_thd, c)
    explain = [f"VM host {o.name}: {o.reason}" for o in options if o.reason is not None]
    fitting = rank(options, policy)
    head = "No available machine matches constraints, and no VM host can compose one"
    if c.dry_run:
        if fitting:
            raise NoMatch(f"No Ready machine matches constraints; allocate (without dry_run) would compose a VM "
                          f"on VM host {fitting[0].name} ({fitting[0].ask.cores} cores, "
                          f"{fitting[0].ask.memory // MIB} MiB).")
        raise NoMatch(f"{head}: " + ("; ".join(explain) or "there are no VM hosts") + ".")
    failures = []
    for option in fitting:
        try:
            m = await compose.compose(region, option.host_id, option.ask, user, dynamic=True)
        except (compose.ComposeRefused, FieldError) as e:
            explain.append(f"VM host {option.name}: {getattr(e, 'message', None) or e}")
            continue
        except (hosterrors.DriverError, NoRackConnected) as e:
            failures.append(f"VM host {option.name}: {e or type(e).__name__}")
            continue

        def allocate_thd(cur, m=m):
            if not allocations.claim_thd(cur, m.id, user.id, c.agent_name, owned_by_caller=True):
                raise NoMatch(f"The VM {m.hostname} composed for this allocation was taken away before it could "
                              f"be allocated.")
            return _allocated_thd(cur, m.system_id, c, user, f"composed on VM host {option.name}")

        composed = await region.db.run(allocate_thd)
        return Allocated(composed, composed_match(composed, c), option.name)
    if failures:
        raise Unavailable("Composing a VM for this allocation failed: " + "; ".join(failures + explain) + ".")
    raise NoMatch(f"{head}: " + ("; ".join(explain) or "there are no VM hosts") + ".")


def composed_match(m: machines.Machine, c: Constraints) -> Match:
    """A VM composed for `c`: each interface label is the NIC named for it, each disk its label."""
    nics = {n.name: n.id for n in m.interfaces}
    disks = {d.name: d.id for d in m.disks}
    return Match({a.label: [nics[a.ifname]] for a in c.interfaces if a.ifname in nics},
                 {s.label: [disks[s.label]] for s in c.storage if s.label in disks})
