"""Composing LXD virtual machines and containers (spec §6.4).

The first half is pure: it checks a `ComposeRequest` and turns it into the LXD
instance definition and the custom volumes it needs, with no I/O.  A container is
made as empty as a VM (`source: none`: LXD 5.0 accepts that for containers too, it
only cannot start until deploy gives it a root filesystem); its data disks are
custom filesystem volumes mounted at the path the region chose (LXD refuses custom
block volumes on containers), and it has none of the VM-only keys.  The second
half, `LXDComposeMixin`, is mixed into `LXDDriver` (rack/drivers/lxd.py) and
sends the requests; it uses the driver's `_connect`, `_run` and `_wait`.  The
created VM is described from what was sent (`created_vm`), not read back.

Compose never starts the machine.  Everything it creates (custom volumes, then the
instance) is recorded as it goes; on any failure it is removed again, newest
first, before DriverError is raised with LXD's message.  Something that was
already there (an instance or volume of the same name) is never touched, unless it
carries the request's reservation key (`user.vmyard.reservation`): then an earlier
try of this very compose made it (its rack died before answering), and the instance
is answered as if just created.
"""

from __future__ import annotations

import re
import secrets
from typing import Callable
from urllib.parse import quote

import attrs
from pylxd import exceptions as lxd_exc

from common.hosterrors import DriverError
from common.models import (CONTAINER, INSTANCE_TYPES, ComposeRequest, DiscoveredVM, HostTarget, RequestedDisk,
                           RequestedNic)
from rack.drivers.lxd_instances import DEBIAN_ARCH, STOPPED, instance_to_vm, kind

# Debian architecture -> kernel architecture (the first kernel name wins: armhf → armv7l)
KERNEL_ARCH = {debian: kernel for kernel, debian in reversed(list(DEBIAN_ARCH.items()))}
NICTYPES = {"bridged": "bridged", "bridge": "bridged", "macvlan": "macvlan", "sriov": "sriov"}
VOLUME_PREFIX = "vmyard-"
RESERVATION_KEY = "user.vmyard.reservation"

# LXD instance names are host names: letters, digits, hyphens, at most 63, starting
# with a letter, not ending with a hyphen.
_NEW_INSTANCE_NAME = re.compile(r"^[A-Za-z](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_DEVICE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_IFACE_NAME = re.compile(r"^[A-Za-z0-9_.:@-]{1,15}$")
_POOL_NAME = re.compile(r"^(?!\.\.?$)[^/\s]{1,255}$")
_MAC = re.compile(r"^[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5}$")
_MOUNT_PATH = re.compile(r"^(?:/(?!\.\.?(?:/|$))[A-Za-z0-9_.-]+)+$")  # absolute, no . or .. parts


CONFLICT = 409  # HTTP status of LXD's "already exists" refusals


class Conflict(DriverError):
    """LXD refused to create something because one of that name exists."""


class OperationFailed(DriverError):
    """LXD ran an accepted request and reports that it failed (LXD reverts what a failed
    create made, so nothing of it is left)."""


def lxd_error(e: lxd_exc.LXDAPIException) -> str:
    """LXD's own error text of a refused request."""
    try:
        return e.response.json().get("error") or str(e)
    except Exception:
        return str(e)


# -- pure helpers -----------------------------------------------------------------------------

def kernel_architecture(architecture: str) -> str:
    """"amd64/generic" (or "amd64") → "x86_64"; a kernel name is kept as it is."""
    debian = (architecture or "").split("/", 1)[0]
    if debian in KERNEL_ARCH:
        return KERNEL_ARCH[debian]
    if debian in DEBIAN_ARCH:
        return debian
    raise DriverError(f"unsupported architecture {architecture!r} (known: "
                      f"{', '.join(sorted(KERNEL_ARCH))})")


def cpu_limit(cores: int, pinned: list[int]) -> str:
    """`limits.cpu`: a count without pinning; "N-N" for one pinned core (a bare number
    would be a count); otherwise the sorted pinned cores, comma-joined."""
    if not pinned:
        return str(cores)
    if len(pinned) == 1:
        return f"{pinned[0]}-{pinned[0]}"
    return ",".join(str(c) for c in sorted(pinned))


def volume_name(instance_name: str, disk: RequestedDisk) -> str:
    return f"{VOLUME_PREFIX}{instance_name}-{disk.name}"


def random_mac() -> str:
    """A random unicast, locally administered MAC address."""
    octets = bytearray(secrets.token_bytes(6))
    octets[0] = (octets[0] & 0xFC) | 0x02
    return ":".join(f"{b:02x}" for b in octets)


def check_request(request: ComposeRequest, project: str) -> None:
    """Everything that can be checked without asking LXD; raises DriverError."""
    name = request.instance_name
    if request.instance_type not in INSTANCE_TYPES:
        raise DriverError(f"unknown LXD instance type {request.instance_type!r} ({' or '.join(INSTANCE_TYPES)})")
    what = kind(request.instance_type)
    if not isinstance(name, str) or not _NEW_INSTANCE_NAME.match(name):
        raise DriverError(f"invalid LXD instance name {name!r}: use letters, digits and hyphens "
                          f"(at most 63), starting with a letter and not ending with a hyphen")
    if not project or "/" in project:
        raise DriverError(f"invalid LXD project name {project!r}")
    if request.architecture:
        kernel_architecture(request.architecture)
    if request.cores < 1:
        raise DriverError(f"a {what} needs at least 1 core, not {request.cores}")
    if request.memory < 1:
        raise DriverError(f"a {what} needs memory, not {request.memory} bytes")
    if request.hugepages_backed and request.instance_type == CONTAINER:
        raise DriverError("a container's memory cannot be backed by hugepages (limits.memory.hugepages is "
                          "for VMs only)")
    pinned = request.pinned_cores
    if any(not isinstance(c, int) or c < 0 for c in pinned) or len(set(pinned)) != len(pinned):
        raise DriverError(f"invalid pinned cores {pinned!r}")
    if pinned and len(pinned) != request.cores:
        raise DriverError(f"{request.cores} cores requested but {len(pinned)} pinned")
    if not request.disks:
        raise DriverError(f"a {what} needs at least one disk (the first is its root disk)")
    devices: set[str] = set()
    for index, disk in enumerate(request.disks):
        _check_device_name(disk.name, devices)
        if index and request.instance_type == CONTAINER and not _MOUNT_PATH.match(disk.path or ""):
            raise DriverError(f"disk {disk.name}: a container mounts a data disk at an absolute path, "
                              f"not {disk.path!r}")
        if disk.size < 1:
            raise DriverError(f"disk {disk.name} has no size ({disk.size} bytes)")
        if not isinstance(disk.pool, str) or not _POOL_NAME.match(disk.pool):
            raise DriverError(f"invalid storage pool name {disk.pool!r} for disk {disk.name}")
    for nic in request.nics:
        _check_device_name(nic.name, devices)
        if nic.nictype not in NICTYPES:
            raise DriverError(f"NIC {nic.name}: unsupported nictype {nic.nictype!r} (bridged, "
                              f"macvlan or sriov)")
        if not isinstance(nic.parent, str) or not _IFACE_NAME.match(nic.parent):
            raise DriverError(f"NIC {nic.name}: invalid parent interface name {nic.parent!r}")
        if nic.vlan is not None and not 0 <= nic.vlan <= 4094:
            raise DriverError(f"NIC {nic.name}: VLAN {nic.vlan} is not within 0-4094")
        if nic.hwaddr is not None and not _MAC.match(nic.hwaddr):
            raise DriverError(f"NIC {nic.name}: invalid MAC address {nic.hwaddr!r}")


def _check_device_name(name: str, seen: set[str]) -> None:
    if not isinstance(name, str) or not _DEVICE_NAME.match(name):
        raise DriverError(f"invalid device name {name!r}")
    if name in seen:
        raise DriverError(f"two devices are named {name!r}")
    seen.add(name)


def _reservation_config(request: ComposeRequest) -> dict[str, str]:
    return {RESERVATION_KEY: request.reservation} if request.reservation else {}


def is_reserved_for(config: dict, request: ComposeRequest) -> bool:
    """Whether something's config says this compose (an earlier try of it) made it."""
    return bool(request.reservation) and config.get(RESERVATION_KEY) == request.reservation


def volume_definitions(request: ComposeRequest) -> list[tuple[str, dict]]:
    """(pool, POST body) of the custom volume for each disk after the first: a block volume
    for a VM, a filesystem for a container."""
    content_type = "filesystem" if request.instance_type == CONTAINER else "block"
    return [(disk.pool, {"name": volume_name(request.instance_name, disk), "type": "custom",
                         "content_type": content_type,
                         "config": {"size": str(disk.size), **_reservation_config(request)}})
            for disk in request.disks[1:]]


def nic_device(nic: RequestedNic, boot: bool, mac: Callable[[], str] = random_mac) -> dict:
    """The NIC device; `boot`: the VM boots from it first (containers do not boot from a NIC)."""
    nictype = NICTYPES[nic.nictype]
    device = {"type": "nic", "nictype": nictype, "parent": nic.parent, "name": nic.name}
    if nic.vlan:  # None or 0: untagged
        device["vlan"] = str(nic.vlan)
    if nic.hwaddr:
        device["hwaddr"] = nic.hwaddr.lower()
    elif nictype == "sriov":
        device["hwaddr"] = mac()
    if boot:
        device["boot.priority"] = "1"  # network boot before the root disk (priority 0)
    return device


def instance_definition(request: ComposeRequest, kernel_arch: str,
                        mac: Callable[[], str] = random_mac) -> dict:
    """The POST /1.0/instances body: an empty VM or container (no image, no profiles)."""
    vm = request.instance_type != CONTAINER
    root, *others = request.disks
    devices: dict[str, dict] = {root.name: {"path": "/", "type": "disk", "pool": root.pool,
                                            "size": str(root.size), **({"boot.priority": "0"} if vm else {})}}
    for disk in others:
        devices[disk.name] = {"type": "disk", "pool": disk.pool, "source": volume_name(request.instance_name, disk),
                              **({} if vm else {"path": disk.path})}
    for index, nic in enumerate(request.nics):
        devices[nic.name] = nic_device(nic, boot=vm and index == 0, mac=mac)
    vm_only = {"limits.memory.hugepages": "true" if request.hugepages_backed else "false",
               "security.secureboot": "false"}
    return {
        "name": request.instance_name,
        "type": request.instance_type,
        "source": {"type": "none"},
        "profiles": [],
        "architecture": kernel_arch,
        "config": {
            "limits.cpu": cpu_limit(request.cores, request.pinned_cores),
            "limits.memory": str(request.memory),
            **(vm_only if vm else {}),
            **_reservation_config(request),
        },
        "devices": devices,
    }


def created_vm(definition: dict, request: ComposeRequest, project: str, clustered: bool) -> DiscoveredVM:
    """The VM LXD made from `definition` (created stopped), read as discovery reads instances."""
    instance = {**definition, "status_code": STOPPED, "expanded_config": definition["config"],
                "expanded_devices": definition["devices"], "location": "none"}
    return requested_vm(instance, request, project, clustered)


def requested_vm(instance: dict, request: ComposeRequest, project: str, clustered: bool) -> DiscoveredVM:
    """An instance made for `request`, as discovery reads it (its data disks' sizes as asked)."""
    sizes = {(disk.pool, volume_name(request.instance_name, disk), None): str(disk.size)
             for disk in request.disks[1:]}
    return instance_to_vm(instance, project, clustered=clustered, volume_sizes=sizes)


# -- requests -----------------------------------------------------------------------------------

class LXDComposeMixin:
    """compose_vm for LXDDriver."""

    def compose_vm(self, target: HostTarget, request: ComposeRequest) -> DiscoveredVM:
        """Create (never start) the VM or container `request` describes in the target's project and return
        it as created.  On failure whatever this call created is removed first."""
        check_request(request, target.project)
        with self._connect(target, None) as (client, _):
            return self._compose(client, target.project, request)

    # -- compose ----------------------------------------------------------------------------------

    def _compose(self, client, project: str, request: ComposeRequest) -> DiscoveredVM:
        name = request.instance_name
        what = f"LXD {kind(request.instance_type)} {name!r}"
        params = {"project": project}
        env = client.host_info.get("environment") or {}
        arch = kernel_architecture(request.architecture or env.get("kernel_architecture") or "")
        for nic in request.nics:
            try:
                client.api.networks[quote(nic.parent, safe="")].get()
            except lxd_exc.NotFound:
                raise DriverError(f"cannot compose {what}: NIC {nic.name}: the LXD host has "
                                  f"no network interface {nic.parent!r}") from None
            except lxd_exc.LXDAPIException as e:
                raise DriverError(f"cannot compose {what}: NIC {nic.name}: "
                                  f"{lxd_error(e)}") from None
        # Every NIC gets its MAC from us, so the machine is known without reading it back.
        request = attrs.evolve(request, nics=[n if n.hwaddr else attrs.evolve(n, hwaddr=random_mac())
                                              for n in request.nics])
        definition = instance_definition(request, arch)
        created: list[tuple[str, ...]] = []  # ("volume", pool, name) / ("instance", name)
        clustered = bool(env.get("server_clustered", False))
        try:
            for pool, body in volume_definitions(request):
                self._create_volume(client, created, pool, body, request, params)
            self._create(client, created, ("instance", name), f"cannot create {what}",
                         client.api.instances.post, json=definition, params=params)
        except BaseException as e:
            # Refused, or failed and reverted by LXD, yet an instance of that name is there: it
            # existed already (LXD 5.0 reports that from the operation, later ones with a 409).
            existing = self._instance(client, name, params) if isinstance(e, (Conflict, OperationFailed)) else None
            taken = existing is not None
            if taken and ("instance", name) in created:
                created.remove(("instance", name))
            if taken and is_reserved_for(existing.get("config") or {}, request):
                return requested_vm(existing, request, project, clustered)
            left = self._undo(client, project, created)
            if taken:
                raise DriverError(f"an instance named {name} already exists in project {project}") from None
            if isinstance(e, DriverError):
                if left:
                    raise type(e)(f"{e}; {left}") from None
                raise
            if left:  # the outcome is known only in part: say so, whatever the cause
                raise DriverError(f"composing {what} failed ({type(e).__name__}: {e}); "
                                  f"{left}") from e
            raise
        return created_vm(definition, request, project, clustered)

    def _instance(self, client, name: str, params: dict) -> dict | None:
        """The instance of that name, or None."""
        try:
            return client.api.instances[name].get(params=params).json()["metadata"]
        except lxd_exc.LXDAPIException:
            return None

    def _create_volume(self, client, created: list, pool: str, body: dict, request: ComposeRequest,
                       params: dict) -> None:
        volumes = client.api.storage_pools[quote(pool, safe="")].volumes.custom
        key = ("volume", pool, body["name"])
        try:
            self._create(client, created, key, f"cannot create storage volume {body['name']!r} in pool {pool!r}",
                         volumes.post, json=body, params=params)
        except (Conflict, OperationFailed):
            try:
                config = volumes[quote(body["name"], safe="")].get(params=params).json()["metadata"]["config"]
            except lxd_exc.LXDAPIException:
                config = {}
            if not is_reserved_for(config, request):
                raise
            if key not in created:  # made by an earlier try of this compose: removed with the rest on failure
                created.append(key)

    def _create(self, client, created: list, key: tuple[str, ...], what: str, method, **kwargs) -> None:
        """POST and wait.  `key` is in `created` from the moment LXD may have made the
        thing, unless LXD refused it outright."""
        created.append(key)
        try:
            response = method(**kwargs)
        except lxd_exc.LXDAPIException as e:
            created.remove(key)
            error = Conflict if e.response.status_code == CONFLICT else DriverError
            raise error(f"{what}: {lxd_error(e)}") from None
        self._wait(client, f"{what}: ", response)

    def _undo(self, client, project: str, created: list[tuple[str, ...]]) -> str:
        """Remove what `_compose` created, newest first; "" or what is left behind."""
        params = {"project": project}
        left = []
        for key in reversed(created):
            if key[0] == "instance":
                what, node = f"instance {key[1]!r}", client.api.instances[key[1]]
            else:
                what = f"storage volume {key[2]!r} in pool {key[1]!r}"
                node = client.api.storage_pools[quote(key[1], safe="")].volumes.custom[
                    quote(key[2], safe="")]
            try:
                self._run(client, "", node.delete, params=params, missing_ok=True)
            except Exception as e:
                left.append(f"{what} ({type(e).__name__}: {e})" if not isinstance(e, DriverError)
                            else f"{what} ({e})")
        return ("could not remove what was already created: " + "; ".join(left)) if left else ""
