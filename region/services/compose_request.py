"""What a compose asks for: the request's fields as sent, checked against the host.

`ComposeFields` carries the MAAS fields as the client sent them; `validate` turns them
into a `ComposeAsk` (MAAS defaults, vmyard's units) or raises one `InvalidInput` naming
every bad field at once.  It needs the host's architectures, so the compose service
runs it once the host is known.
"""

from __future__ import annotations

import re

import attrs

from common.models import CONTAINER, INSTANCE_TYPES, VIRTUAL_MACHINE
from region.netconstraints import ConstraintError, InterfaceAsk, parse_interfaces
from region.number_input import NumberError, read_integer
from region.services.errors import InvalidInput

GB = 1000**3
MIB = 1024 * 1024
_STORAGE_ITEM = re.compile(r"^(?:(?P<label>[a-zA-Z0-9]+):)?(?P<size>[0-9]+(?:\.[0-9]+)?)(?P<unit>[KMGT]i?B?)?"
                           r"(?:\((?P<tags>[^)]+)\))?$")
_UNITS = {"K": 1000, "M": 1000**2, "G": GB, "T": 1000**4}
_HOSTNAME = re.compile(r"^[a-z][a-z0-9-]{0,62}$", re.IGNORECASE)
DEFAULT_STORAGE = "root:8(local)"
TRUE = ("true", "1", "yes", "on")
# Bounds far above any real VM that keep every request cheap to check and every size inside
# PostgreSQL's integer (cores) and bigint (bytes) columns.
MAX_CORES = 4096
MAX_PINNED_CORES = 1024
MAX_MEMORY_MIB = 2**30  # 1 PiB
MAX_CPU_SPEED_MHZ = 100_000
MAX_DISKS = 64
MAX_DISK_BYTES = 1000**5  # 1 PB
MAX_STORAGE_LENGTH = 4096
_CORE_RANGE = re.compile(r"([0-9]{1,5})(?:-([0-9]{1,5}))?")


@attrs.frozen
class StorageAsk:
    label: str
    size: int  # bytes
    tags: tuple[str, ...] = ()


@attrs.frozen
class ComposeAsk:
    cores: int
    memory: int  # bytes
    pinned_cores: tuple[int, ...]
    hugepages_backed: bool
    architecture: str | None
    hostname: str | None
    zone: str | None
    pool: str | None
    storage: tuple[StorageAsk, ...]
    interfaces: tuple[InterfaceAsk, ...]
    instance_type: str = VIRTUAL_MACHINE


@attrs.frozen
class PhysicalLimits:
    """What the host physically has: MAAS's compose form caps `cores` and `memory` at these (a 400),
    whatever the overcommit ratios; 0 is not known yet (a host not discovered), so no cap."""

    cores: int
    memory: int  # bytes


@attrs.frozen
class ComposeFields:
    """`op=compose`'s fields as sent (None: absent); `pinned_cores` split at commas."""

    cores: str | None = None
    pinned_cores: tuple[str, ...] = ()
    memory: str | None = None
    hugepages_backed: str | None = None
    architecture: str | None = None
    cpu_speed: str | None = None
    hostname: str | None = None
    zone: str | None = None
    pool: str | None = None
    storage: str | None = None
    interfaces: str | None = None
    instance_type: str | None = None


def parse_storage(value: str, *, any_root_size: bool = False) -> tuple[StorageAsk, ...]:
    """`label:size(tags),…`; sizes in GB (10^9) unless a unit says otherwise (20G, 512M, 1.5T, 8GiB).
    The first disk stays first (root); the rest go most-tagged first, as MAAS orders them.
    `any_root_size` (allocate's constraint): a root size of exactly 0 means any size, as Juju
    sends `root:0` when it asks for volumes without a root-disk constraint.
    Raises ValueError with the user's message."""
    if len(value) > MAX_STORAGE_LENGTH:
        raise ValueError(f"Ensure this value has at most {MAX_STORAGE_LENGTH} characters (it has {len(value)}).")
    raws = _split_outside_parens(value) if value else []
    if len(raws) > MAX_DISKS:
        raise ValueError(f"Ensure at most {MAX_DISKS} disks are asked for (this asks for {len(raws)}).")
    items = []
    for index, raw in enumerate(raws):
        m = _STORAGE_ITEM.match(raw)
        if not m:
            raise ValueError(f'Malformed storage constraint, "{value}".')
        unit = m["unit"] or "G"
        scale = _UNITS[unit[0]] if "i" not in unit else 1024 ** (" KMGT".index(unit[0]))
        size = float(m["size"]) * scale  # a long run of digits is inf here, never an error
        if size > MAX_DISK_BYTES:
            raise ValueError(f'Malformed storage constraint, "{value}": a disk is at most '
                             f'{MAX_DISK_BYTES // 1000**5} PB.')
        if int(size) <= 0 and not (any_root_size and index == 0 and size == 0):
            raise ValueError(f'Malformed storage constraint, "{value}": sizes must be above zero.')
        tags = tuple(t.strip() for t in (m["tags"] or "").split(",") if t.strip()) if m["tags"] else ()
        items.append(StorageAsk(m["label"] or ("root" if index == 0 else f"disk{index}"), int(size), tags))
    if not items:
        raise ValueError(f'Malformed storage constraint, "{value}".')
    labels = [i.label for i in items]
    if len(set(labels)) != len(labels):
        raise ValueError(f'Malformed storage constraint, "{value}": a label is used twice.')
    return (items[0], *sorted(items[1:], key=lambda i: -len(i.tags)))


def _split_outside_parens(value: str) -> list[str]:
    """'a:1,b:2(x,y)' -> ['a:1', 'b:2(x,y)']: tags in parentheses may hold commas."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(value):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            parts.append(value[start:i])
            start = i + 1
    parts.append(value[start:])
    return parts


class _Errors(dict):
    """Field → messages, in the order found, so one 400 reports every bad field."""

    def add(self, field: str, message: str) -> None:
        self.setdefault(field, []).append(message)


def _int(errors: _Errors, field: str, raw: str | None, default: int, minimum: int, maximum: int) -> int:
    if raw in (None, ""):
        return default
    try:
        return read_integer(raw, minimum=minimum, maximum=maximum)
    except NumberError as e:
        errors.add(field, str(e))
        return default


def _pinned(errors: _Errors, values: tuple[str, ...]) -> tuple[int, ...]:
    """Cores and ranges (`0-3`, `8`); how many is checked before any range is expanded."""
    if len(values) > MAX_PINNED_CORES:
        errors.add("pinned_cores", _too_many_pinned(len(values)))
        return ()
    ranges = []
    for v in values:
        m = _CORE_RANGE.fullmatch(v.strip())
        low, high = (int(m[1]), int(m[2] or m[1])) if m else (1, 0)
        if low > high:  # not a core or a range, or a range backwards
            errors.add("pinned_cores", f"Select a valid choice. {v:.40} is not one of the available choices.")
            continue
        ranges.append(range(low, high + 1))
    count = sum(len(r) for r in ranges)
    if count > MAX_PINNED_CORES:
        errors.add("pinned_cores", _too_many_pinned(count))
        return ()
    return tuple(sorted({core for r in ranges for core in r}))


def _too_many_pinned(count: int) -> str:
    return f"Ensure at most {MAX_PINNED_CORES} cores are pinned (this asks for {count})."


def instance_type_error(value: str) -> str | None:
    """Why `value` is not an LXD instance type (None: it is one)."""
    if value in INSTANCE_TYPES:
        return None
    return f"Select a valid choice. {value:.40} is not one of the available choices ({', '.join(INSTANCE_TYPES)})."


# LXD backs a VM's memory with hugepages (limits.memory.hugepages); a container has no such key:
# its limits.hugepages.* only cap what its processes may take.
CONTAINER_HUGEPAGES = ("LXD containers cannot have hugepage-backed memory (limits.memory.hugepages is for "
                       "virtual machines only); compose a virtual-machine or leave hugepages_backed unset.")


def validate(fields: ComposeFields, architectures: list[str], physical: PhysicalLimits | None = None) -> ComposeAsk:
    """The ask for a host offering `architectures` (its first is the default) and having `physical`."""
    errors = _Errors()
    physical = physical or PhysicalLimits(0, 0)
    pinned = _pinned(errors, fields.pinned_cores)
    cores = _int(errors, "cores", fields.cores, len(pinned) or 1, 1, min(MAX_CORES, physical.cores or MAX_CORES))
    if pinned and fields.cores not in (None, "") and cores != len(pinned):
        errors.add("cores", f"{cores} cores requested but {len(pinned)} pinned; give one or make them agree.")
    memory_mib = _int(errors, "memory", fields.memory, 2048, 1024,
                      min(MAX_MEMORY_MIB, physical.memory // MIB or MAX_MEMORY_MIB))
    architecture = fields.architecture or None
    if architecture is not None and architectures and architecture not in architectures:
        errors.add("architecture", f"Select a valid choice. {architecture} is not one of the available "
                                   f"choices ({', '.join(architectures)}).")
    _int(errors, "cpu_speed", fields.cpu_speed, 0, 300, MAX_CPU_SPEED_MHZ)  # checked, not used
    hostname = fields.hostname or None
    if hostname is not None and not _HOSTNAME.match(hostname):
        errors.add("hostname", f"Enter a valid hostname (a DNS label: a letter, then letters, digits or "
                               f"hyphens, at most 63): {hostname!r}.")
    storage: tuple[StorageAsk, ...] = ()
    try:
        storage = parse_storage(fields.storage or DEFAULT_STORAGE)
    except ValueError as e:
        errors.add("storage", str(e))
    interfaces: tuple[InterfaceAsk, ...] = ()
    try:
        interfaces = tuple(parse_interfaces(fields.interfaces))
    except ConstraintError as e:
        errors.add("interfaces", str(e))
    instance_type = fields.instance_type or VIRTUAL_MACHINE
    if (why := instance_type_error(instance_type)) is not None:
        errors.add("instance_type", why)
    hugepages_backed = (fields.hugepages_backed or "").lower() in TRUE
    if hugepages_backed and instance_type == CONTAINER:
        errors.add("hugepages_backed", CONTAINER_HUGEPAGES)
    if errors:
        raise InvalidInput(dict(errors))
    return ComposeAsk(
        cores=cores, memory=memory_mib * MIB, pinned_cores=pinned, hugepages_backed=hugepages_backed,
        architecture=architecture or (architectures[0] if architectures else "amd64/generic"),
        hostname=hostname, zone=fields.zone or None, pool=fields.pool or None,
        storage=storage, interfaces=interfaces, instance_type=instance_type,
    )
