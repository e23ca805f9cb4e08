"""Pure parsing of LXD instances (VMs and containers) into `DiscoveredVM` (spec §6.6).

Everything here works on plain dicts as LXD returns them (`GET
/1.0/instances?recursion=1`), with no I/O, so it is unit-testable without LXD.
Whatever needs another request (custom volume sizes, network types, pool
defaults) is looked up by the driver first -- see `volume_refs`,
`network_refs` and `pools_needing_default` -- and passed in as mappings.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any, Iterator, Mapping

from common.models import CONTAINER, INSTANCE_TYPES, VIRTUAL_MACHINE, DiscoveredVM, VMDisk, VMInterface

# kernel architecture -> Debian architecture (as MAAS names them, "/generic" added)
DEBIAN_ARCH = {
    "x86_64": "amd64", "aarch64": "arm64", "ppc64le": "ppc64el", "s390x": "s390x",
    "armv7l": "armhf", "armv8l": "armhf", "i686": "i386", "i586": "i386", "riscv64": "riscv64",
}

POWER_STATES = {101: "on", 102: "off", 103: "on", 110: "off"}  # status_code -> power state
STOPPED = 102

DEFAULT_MEMORY = 1024**3  # bytes, when limits.memory is unset or not a size
DEFAULT_DISK_SIZE = 10 * 1024**3  # bytes: LXD's own default root disk (10 GiB) when no size is known

# Disk devices that are not disks of the machine (config drives LXD generates).
_CONFIG_DRIVE_SOURCES = ("cloud-init:", "agent:")

_UNITS = {
    "": 1, "b": 1,
    "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4, "pb": 1000**5, "eb": 1000**6,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4, "pib": 1024**5, "eib": 1024**6,
}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$")


def parse_size(value: Any) -> int | None:
    """An LXD size ("512MiB", "1GB", "1073741824") in bytes; None if it is not a size
    (empty, a percentage such as "50%", an unknown unit...).  B, kB..EB are powers of
    1000, KiB..EiB powers of 1024, a bare number is bytes."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    m = _SIZE_RE.match(str(value))
    if not m:
        return None
    factor = _UNITS.get(m.group(2).lower())
    if factor is None:
        return None
    try:
        return int(Decimal(m.group(1)) * factor)
    except InvalidOperation:
        return None


def parse_memory(config: Mapping[str, Any]) -> int:
    """Bytes from `limits.memory`; 1 GiB when it is missing or not an absolute size."""
    size = parse_size(config.get("limits.memory"))
    return size if size else DEFAULT_MEMORY


def parse_hugepages(config: Mapping[str, Any]) -> bool:
    return str(config.get("limits.memory.hugepages", "")).strip().lower() in ("true", "1")


def parse_cpu_limit(value: Any) -> tuple[int, list[int]]:
    """`limits.cpu` as (cores, pinned cores): "" → (1, []), "4" → (4, []),
    "0-3,8" → (5, [0, 1, 2, 3, 8]).  Anything unparseable gives (1, [])."""
    text = str(value if value is not None else "").strip()
    if not text:
        return 1, []
    if text.isdigit():
        return max(int(text), 1), []
    pinned: set[int] = set()
    for item in text.split(","):
        item = item.strip()
        first, sep, last = item.partition("-")
        if not first.strip().isdigit() or (sep and not last.strip().isdigit()):
            return 1, []
        lo = int(first)
        hi = int(last) if sep else lo
        if hi < lo:
            return 1, []
        pinned.update(range(lo, hi + 1))
    return len(pinned), sorted(pinned)


def power_state(status_code: Any) -> str:
    try:
        return POWER_STATES.get(int(status_code), "unknown")
    except (TypeError, ValueError):
        return "unknown"


def debian_architecture(kernel_arch: str) -> str:
    """"x86_64" → "amd64/generic"; "" when LXD gave no architecture."""
    if not kernel_arch:
        return ""
    return f"{DEBIAN_ARCH.get(kernel_arch, kernel_arch)}/generic"


def instance_location(instance: Mapping[str, Any], clustered: bool) -> str | None:
    """The cluster member; None on a standalone server (where LXD says "none")."""
    location = instance.get("location") or ""
    if not clustered or location in ("", "none"):
        return None
    return location


def is_machine(instance: Mapping[str, Any]) -> bool:
    """A VM or a container: what vmyard manages as a machine."""
    return instance.get("type") in INSTANCE_TYPES


def kind(instance_type: str) -> str:
    """The word for an instance type in messages: "VM" or "container"."""
    return "container" if instance_type == CONTAINER else "VM"


def is_machine_disk(device: Mapping[str, Any]) -> bool:
    """A `disk` device that is a disk of the machine: not a cloud-init/agent config
    drive, and not a host directory shared into the VM (host source mounted at a `path`;
    a passed-through block device has no path and is a disk)."""
    if device.get("type") != "disk":
        return False
    source = str(device.get("source") or "")
    if source and not device.get("pool") and device.get("path"):
        return False
    return not source.startswith(_CONFIG_DRIVE_SOURCES)


def custom_volume(device: Mapping[str, Any]) -> tuple[str, str] | None:
    """(pool, volume) when the disk device is a custom storage volume."""
    if is_machine_disk(device) and device.get("source") and device.get("pool"):
        return str(device["pool"]), str(device["source"])
    return None


def _devices(instance: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for name, device in (instance.get("expanded_devices") or {}).items():
        if isinstance(device, Mapping):
            yield name, device


def volume_refs(instance: Mapping[str, Any]) -> set[tuple[str, str]]:
    """The custom volumes (pool, name) the instance's disks use."""
    return {ref for _, dev in _devices(instance) if (ref := custom_volume(dev))}


def network_refs(instance: Mapping[str, Any]) -> set[str]:
    """The managed networks the instance's NICs are attached to."""
    return {str(dev["network"]) for _, dev in _devices(instance)
            if dev.get("type") == "nic" and dev.get("network")}


def pools_needing_default(instance: Mapping[str, Any]) -> set[str]:
    """Pools of disks whose size only the pool's `volume.size` can tell."""
    return {str(dev["pool"]) for _, dev in _devices(instance)
            if is_machine_disk(dev) and dev.get("pool") and not custom_volume(dev)
            and parse_size(dev.get("size")) is None}


def _disk(name: str, device: Mapping[str, Any], location: str | None,
          volume_sizes: Mapping[tuple[str, str, str | None], Any],
          pool_volume_sizes: Mapping[str, Any]) -> VMDisk:
    pool = device.get("pool") or None
    size = None
    ref = custom_volume(device)
    if ref is not None:
        size = volume_sizes.get((*ref, location))
        if size is None:
            size = volume_sizes.get((*ref, None))
        size = parse_size(size)
    if size is None:
        size = parse_size(device.get("size"))
    if size is None and pool and ref is None:
        size = parse_size(pool_volume_sizes.get(pool))
    return VMDisk(name=name, size=DEFAULT_DISK_SIZE if size is None else size, pool=pool)


def _vid(device: Mapping[str, Any]) -> int:
    try:
        return int(device.get("vlan") or 0)
    except (TypeError, ValueError):
        return 0


def _interface(name: str, device: Mapping[str, Any], config: Mapping[str, Any],
               network_types: Mapping[str, str | None], boot: bool) -> VMInterface:
    if device.get("network"):
        attach_name = str(device["network"])
        attach_type = network_types.get(attach_name)
    else:
        attach_name = device.get("parent") or None
        nictype = device.get("nictype") or None
        attach_type = "bridge" if nictype == "bridged" else nictype
    return VMInterface(
        name=name,
        mac=device.get("hwaddr") or config.get(f"volatile.{name}.hwaddr") or None,
        attach_type=attach_type,
        attach_name=attach_name,
        vid=_vid(device),
        boot=boot,
    )


def instance_to_vm(instance: Mapping[str, Any], project: str, *, clustered: bool = False,
                   volume_sizes: Mapping[tuple[str, str, str | None], Any] | None = None,
                   network_types: Mapping[str, str | None] | None = None,
                   pool_volume_sizes: Mapping[str, Any] | None = None) -> DiscoveredVM:
    """One instance (as in `GET /1.0/instances?recursion=1`) as a DiscoveredVM.

    - `volume_sizes`: (pool, volume, location) → the custom volume's `config.size`;
      location None matches any member.
    - `network_types`: network name → its type ("bridge", "macvlan", "ovn"...).
    - `pool_volume_sizes`: pool → its `volume.size` (the default size of new volumes).
    """
    config = instance.get("expanded_config") or {}
    location = instance_location(instance, clustered)
    cores, pinned = parse_cpu_limit(config.get("limits.cpu"))
    disks, nics = [], []
    # The root disk (mounted at /) first, as the machine's boot disk; then device order.
    for name, device in sorted(_devices(instance), key=lambda item: item[1].get("path") != "/"):
        if is_machine_disk(device):
            disks.append(_disk(name, device, location, volume_sizes or {}, pool_volume_sizes or {}))
        elif device.get("type") == "nic":
            nics.append(_interface(name, device, config, network_types or {}, boot=not nics))
    return DiscoveredVM(
        instance_name=instance.get("name", ""),
        project=project,
        architecture=debian_architecture(instance.get("architecture", "")),
        power_state=power_state(instance.get("status_code")),
        cores=cores,
        memory=parse_memory(config),
        pinned_cores=pinned,
        hugepages_backed=parse_hugepages(config),
        disks=disks,
        interfaces=nics,
        location=location,
        instance_type=instance.get("type") or VIRTUAL_MACHINE,
    )
