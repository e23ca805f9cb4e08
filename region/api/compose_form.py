"""Validation of compose requests (MAAS fields and defaults, vmyard's clearer errors)."""

from __future__ import annotations

import re

import attrs

from region.api.params import Form, Params
from region.netconstraints import ConstraintError, InterfaceAsk, parse_interfaces

GB = 1000**3
_STORAGE_ITEM = re.compile(r"^(?:(?P<label>[a-zA-Z0-9]+):)?(?P<size>[0-9]+(?:\.[0-9]+)?)(?P<unit>[KMGT]i?B?)?"
                           r"(?:\((?P<tags>[^)]+)\))?$")
_UNITS = {"K": 1000, "M": 1000**2, "G": GB, "T": 1000**4}
_HOSTNAME = re.compile(r"^[a-z][a-z0-9-]{0,62}$", re.IGNORECASE)
DEFAULT_STORAGE = "root:8(local)"


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


def parse_storage(value: str) -> tuple[StorageAsk, ...]:
    """`label:size(tags),…`; sizes in GB (10^9) unless a unit says otherwise (20G, 512M, 1.5T, 8GiB).
    The first disk stays first (root); the rest go most-tagged first, as MAAS orders them."""
    items = []
    for index, raw in enumerate(_split_outside_parens(value) if value else []):
        m = _STORAGE_ITEM.match(raw)
        if not m:
            raise ValueError(f'Malformed storage constraint, "{value}".')
        unit = m["unit"] or "G"
        scale = _UNITS[unit[0]] if "i" not in unit else 1024 ** (" KMGT".index(unit[0]))
        size = int(float(m["size"]) * scale)
        if size <= 0:
            raise ValueError(f'Malformed storage constraint, "{value}": sizes must be above zero.')
        tags = tuple(t.strip() for t in (m["tags"] or "").split(",") if t.strip()) if m["tags"] else ()
        items.append(StorageAsk(m["label"] or ("root" if index == 0 else f"disk{index}"), size, tags))
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


def _int(form: Form, field: str, default: int, minimum: int) -> int:
    raw = form.params.get(field)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        form.error(field, "Enter a whole number.")
        return default
    if value < minimum:
        form.error(field, f"Ensure this value is greater than or equal to {minimum}.")
    return value or default  # MAAS: a falsy value means the default


def _pinned(form: Form) -> tuple[int, ...]:
    values = form.params.getlist("pinned_cores", split_commas=True)
    cores = set()
    for v in values:
        bounds = v.split("-", 1)
        if not all(b.strip().isdigit() for b in bounds):
            form.error("pinned_cores", f"Select a valid choice. {v} is not one of the available choices.")
            continue
        low, high = int(bounds[0]), int(bounds[-1])
        cores.update(range(low, high + 1))
    return tuple(sorted(cores))


def parse_compose(params: Params, *, architectures: list[str]) -> ComposeAsk:
    form = Form(params)
    pinned = _pinned(form)
    cores = _int(form, "cores", len(pinned) or 1, 1)
    if pinned and params.get("cores") not in (None, "") and cores != len(pinned):
        form.error("cores", f"{cores} cores requested but {len(pinned)} pinned; give one or make them agree.")
    memory_mib = _int(form, "memory", 2048, 1024)
    architecture = params.get("architecture") or None
    if architecture is not None and architectures and architecture not in architectures:
        form.error("architecture", f"Select a valid choice. {architecture} is not one of the available "
                                   f"choices ({', '.join(architectures)}).")
    cpu_speed = params.get("cpu_speed")
    if cpu_speed not in (None, ""):
        _int(form, "cpu_speed", 0, 300)
    hostname = params.get("hostname") or None
    if hostname is not None and not _HOSTNAME.match(hostname):
        form.error("hostname", f"Enter a valid hostname (a DNS label: a letter, then letters, digits or "
                               f"hyphens, at most 63): {hostname!r}.")
    storage: tuple[StorageAsk, ...] = ()
    try:
        storage = parse_storage(params.get("storage") or DEFAULT_STORAGE)
    except ValueError as e:
        form.error("storage", str(e))
    interfaces: tuple[InterfaceAsk, ...] = ()
    try:
        interfaces = tuple(parse_interfaces(params.get("interfaces")))
    except ConstraintError as e:
        form.error("interfaces", str(e))
    form.check()
    return ComposeAsk(
        cores=cores, memory=memory_mib * 1024 * 1024, pinned_cores=pinned,
        hugepages_backed=(params.get("hugepages_backed") or "").lower() in ("true", "1", "yes", "on"),
        architecture=architecture or (architectures[0] if architectures else "amd64/generic"),
        hostname=hostname, zone=params.get("zone") or None, pool=params.get("pool") or None,
        storage=storage, interfaces=interfaces,
    )
