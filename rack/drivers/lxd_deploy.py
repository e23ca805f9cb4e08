"""Deploying onto LXD instances: the image, the rebuilt root disk, cloud-init's data, the start.

LXD cannot swap the source of an instance's root disk, so a deploy rebuilds the instance: it is
stopped and deleted (its custom volumes are separate and stay) and created again under the
same name from the image, with the same config (limits), devices (NICs with their MACs, custom
volumes, root disk size and pool) and profiles, plus the cloud-init keys and the host's extra
profiles.  Before anything is deleted the image is on the host and of the instance's type, so
LXD has no reason left to refuse the create; if it still does, the instance is recreated empty
(`source: none`) with the same devices, so it can be deployed again or released.

`LXDDeployMixin` is mixed into `LXDDriver` (rack/drivers/lxd.py) and uses its `_connect`,
`_run` and `_wait`.  The functions above it are pure.
"""

from __future__ import annotations

import re
import tempfile
import threading
import uuid
from typing import Any

from pylxd import exceptions as lxd_exc

from common.hosterrors import DriverError
from common.models import CloudInitData, HostTarget, ImageRef
from rack.drivers.base import CopyProgress
from rack.drivers.image_fetch import ThrottledProgress, fetch_image
from rack.drivers.lxd_compose import OperationFailed, lxd_error
from rack.drivers.lxd_instances import STOPPED

CLOUD_INIT_KEYS = {"user_data": "cloud-init.user-data", "network_config": "cloud-init.network-config",
                   "vendor_data": "cloud-init.vendor-data"}
# Older spellings LXD still reads: dropped on every rebuild so they cannot contradict ours.
_LEGACY_KEYS = ("user.user-data", "user.network-config", "user.vendor-data", "user.meta-data")
CONFIG_DRIVE = "cloud-init"  # device name of the config drive VMs get (no lxd-agent needed)
START_TIMEOUT = 120  # seconds LXD may take to start the instance
_INSTANCE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,62}$")
_FINGERPRINT = re.compile(r"^[0-9a-f]{64}$")
_PROFILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")

# One import of an image per host and project at a time, however many deploys want it.
_import_locks: dict[tuple[str, str, str], threading.Lock] = {}
_import_locks_guard = threading.Lock()


def _import_lock(address: str, project: str, fingerprint: str) -> threading.Lock:
    with _import_locks_guard:
        return _import_locks.setdefault((address, project, fingerprint), threading.Lock())


# -- pure ---------------------------------------------------------------------------------------

def check_arguments(instance_name: str, profiles: list[str]) -> None:
    if not isinstance(instance_name, str) or not _INSTANCE_NAME.match(instance_name):
        raise DriverError(f"invalid LXD instance name {instance_name!r}")
    bad = [p for p in profiles if not _PROFILE.match(p)]
    if bad:
        raise DriverError(f"invalid LXD profile name(s): {', '.join(map(repr, bad))}")


def rebuilt_definition(old: dict, source: dict, cloud_init: CloudInitData | None, profiles: list[str]) -> dict:
    """The instance `old` (as LXD describes it) made again from `source`: the same type,
    architecture, limits, devices (NICs keep their MACs) and profiles; `profiles` are the
    profiles it ends with.  cloud-init keys and the config drive only when `cloud_init`."""
    old_config = old.get("config") or {}
    config = {k: v for k, v in old_config.items()
              if not k.startswith(("volatile.", "image.", "cloud-init.")) and k not in _LEGACY_KEYS}
    devices = {}
    for name, device in (old.get("devices") or {}).items():
        device = dict(device)
        if device.get("type") == "disk" and str(device.get("source", "")).startswith("cloud-init:"):
            continue
        if device.get("type") == "nic" and not device.get("hwaddr") and old_config.get(f"volatile.{name}.hwaddr"):
            device["hwaddr"] = old_config[f"volatile.{name}.hwaddr"]  # LXD chose it: keep it
        devices[name] = device
    if cloud_init is not None:
        for field, key in CLOUD_INIT_KEYS.items():
            value = getattr(cloud_init, field)
            if value is not None:
                config[key] = value
        if old.get("type") == "virtual-machine":  # read without lxd-agent, from a config drive
            devices[CONFIG_DRIVE] = {"type": "disk", "source": "cloud-init:config"}
    return {"name": old["name"], "type": old.get("type") or "container", "architecture": old.get("architecture"),
            "config": config, "devices": devices, "profiles": list(profiles),
            "description": old.get("description") or "", "source": source}


def profiles_after_deploy(current: list[str], extra: list[str]) -> list[str]:
    return list(dict.fromkeys([*current, *extra]))


def profiles_after_erase(current: list[str], extra: list[str]) -> list[str]:
    return [p for p in current if p not in extra]


def parse_cloud_init_status(output: str, exit_code: int) -> str:
    """"running", "done", "error" or "unknown" from `cloud-init status` (any version)."""
    for line in output.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "status":
            value = value.strip()
            if value in ("running", "not run", "not started"):
                return "running"
            if value == "done":
                return "error" if exit_code not in (0, 2) else "done"  # 2: done with recoverable errors
            if value in ("error", "degraded done"):
                return "error"
    return "unknown"


# -- talking to LXD -----------------------------------------------------------------------------

class LXDDeployMixin:
    """deploy_machine, erase_machine and cloud_init_status for LXDDriver."""

    def deploy_machine(self, target: HostTarget, instance_name: str, image: ImageRef,
                       cloud_init: CloudInitData, profiles: list[str], progress: CopyProgress | None = None) -> str:
        check_arguments(instance_name, profiles)
        if not _FINGERPRINT.match(image.fingerprint):
            raise DriverError(f"invalid image fingerprint {image.fingerprint!r}")
        with self._connect(target, None) as (client, _):
            params = {"project": target.project}
            image_type = self._ensure_image(client, target, image, ThrottledProgress(progress))
            old = self._read_instance(client, instance_name, params)
            if image_type and image_type != old.get("type"):
                raise DriverError(f"the image is for a {image_type}, but {instance_name!r} is a {old.get('type')}")
            source = {"type": "image", "fingerprint": image.fingerprint}
            definition = rebuilt_definition(old, source, cloud_init,
                                            profiles_after_deploy(old.get("profiles") or [], profiles))
            self._rebuild(client, old, definition, params)
            node = client.api.instances[instance_name]
            self._run(client, f"LXD could not start {instance_name!r}", node.state.put, params=params,
                      json={"action": "start", "timeout": 30}, op_timeout=START_TIMEOUT)
            return "on"

    def erase_machine(self, target: HostTarget, instance_name: str, profiles: list[str]) -> None:
        check_arguments(instance_name, profiles)
        with self._connect(target, None) as (client, _):
            params = {"project": target.project}
            old = self._read_instance(client, instance_name, params)
            definition = rebuilt_definition(old, {"type": "none"}, None,
                                            profiles_after_erase(old.get("profiles") or [], profiles))
            self._rebuild(client, old, definition, params)

    def cloud_init_status(self, target: HostTarget, instance_name: str) -> tuple[str, str]:
        check_arguments(instance_name, [])
        with self._connect(target, None) as (client, _):
            params = {"project": target.project}
            old = self._read_instance(client, instance_name, params)
            if old.get("type") != "container" or old.get("status_code") == STOPPED:
                return "unknown", f"{instance_name!r} is a stopped instance or a VM: cloud-init cannot be asked"
            node = client.api.instances[instance_name]
            try:
                response = node.exec.post(params=params, json={
                    "command": ["cloud-init", "status", "--long"], "record-output": True, "interactive": False,
                    "wait-for-websocket": False, "environment": {"LANG": "C.UTF-8"}})
                operation = self._finished_operation(client, response)
                outputs = (operation.get("metadata") or {}).get("output") or {}
                text = self._exec_log(client, instance_name, outputs.get("1"), params)
            except lxd_exc.LXDAPIException as e:
                return "unknown", f"LXD could not run cloud-init status: {lxd_error(e)}"
            code = int((operation.get("metadata") or {}).get("return", -1))
            return parse_cloud_init_status(text, code), text[-2000:]

    # -- helpers ----------------------------------------------------------------------------------

    def _read_instance(self, client, name: str, params: dict) -> dict:
        try:
            return client.api.instances[name].get(params=params).json()["metadata"]
        except lxd_exc.NotFound:
            raise DriverError(f"no instance named {name!r} in LXD project {params['project']!r}") from None
        except lxd_exc.LXDAPIException as e:
            raise DriverError(f"cannot read LXD instance {name!r}: {lxd_error(e)}") from None

    def _ensure_image(self, client, target: HostTarget, image: ImageRef, progress: "ThrottledProgress") -> str | None:
        """Import the image into the target's project unless it is there; its type."""
        params = {"project": target.project}
        with _import_lock(target.address, target.project, image.fingerprint):
            found = self._image_info(client, image.fingerprint, params)
            if found is None:
                with tempfile.TemporaryFile(prefix="vmyard-image-") as data:
                    fetch_image(image, data, progress)
                    data.seek(0)
                    what = f"LXD could not import image {image.fingerprint[:12]}"
                    try:
                        body = _ImportBody(data, image, progress)
                        self._run(client, what, client.api.images.post, params=params, data=body,
                                  headers={"Content-Type": body.content_type})
                    except (DriverError, OperationFailed):
                        if self._image_info(client, image.fingerprint, params) is None:
                            raise  # not another rack's import of the same image
                found = self._image_info(client, image.fingerprint, params)
        return (found or {}).get("type")

    def _image_info(self, client, fingerprint: str, params: dict) -> dict | None:
        try:
            return client.api.images[fingerprint].get(params=params).json()["metadata"]
        except lxd_exc.NotFound:
            return None
        except lxd_exc.LXDAPIException as e:
            raise DriverError(f"cannot read LXD image {fingerprint[:12]}: {lxd_error(e)}") from None

    def _rebuild(self, client, old: dict, definition: dict, params: dict) -> None:
        name = old["name"]
        node = client.api.instances[name]
        if old.get("status_code") != STOPPED:
            self._run(client, f"cannot stop {name!r}", node.state.put, params=params,
                      json={"action": "stop", "force": True, "timeout": 30})
        self._run(client, f"cannot delete {name!r} to rebuild it", node.delete, params=params)
        try:
            self._run(client, f"LXD could not recreate {name!r}", client.api.instances.post, params=params,
                      json=definition)
        except DriverError as failed:
            empty = rebuilt_definition(old, {"type": "none"}, None, list(old.get("profiles") or []))
            try:
                self._run(client, "", client.api.instances.post, params=params, json=empty)
            except DriverError as e:
                raise DriverError(f"{failed}; recreating it empty failed too: {e}") from None
            raise

    def _finished_operation(self, client, response) -> dict:
        self._wait(client, "cloud-init status: ", response)
        op_id = (response.json().get("metadata") or {}).get("id")
        return client.api.operations[op_id].get().json()["metadata"]

    def _exec_log(self, client, instance_name: str, path: Any, params: dict) -> str:
        """The text of an exec's recorded output (`path` as the operation names it), then removed."""
        if not path:
            return ""
        node = client.api.instances[instance_name].logs[str(path).rstrip("/").rsplit("/", 1)[-1]]
        text = node.get(params=params, is_api=False).text
        try:
            node.delete(params=params)
        except lxd_exc.LXDAPIException:
            pass  # LXD drops exec logs with the instance anyway
        return text


class _ImportBody:
    """What LXD's image import reads, streamed from the downloaded file: the file itself, or for
    a split image a multipart form of its metadata tarball and its rootfs (`rootfs`, or
    `rootfs.img` for a VM); reports how much has been sent."""

    def __init__(self, f, image: ImageRef, progress: ThrottledProgress) -> None:
        self.f, self.progress, self.sent = f, progress, 0
        if image.meta_size:
            boundary = uuid.uuid4().hex
            rootfs = "rootfs.img" if image.filetype == "lxd-disk" else "rootfs"

            def head(name: str) -> bytes:
                return (f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{name}"\r\n'
                        "Content-Type: application/octet-stream\r\n\r\n").encode()

            self.segments: list[bytes | tuple[int, int]] = [
                head("metadata"), (0, image.meta_size), b"\r\n" + head(rootfs),
                (image.meta_size, image.size - image.meta_size), f"\r\n--{boundary}--\r\n".encode()]
            self.content_type = f"multipart/form-data; boundary={boundary}"
        else:
            self.segments, self.content_type = [(0, image.size)], "application/octet-stream"
        self.length = sum(len(s) if isinstance(s, bytes) else s[1] for s in self.segments)
        self._segment, self._offset = 0, 0  # where the next read starts

    def __len__(self) -> int:
        return self.length

    def read(self, n: int = -1) -> bytes:
        if self._segment >= len(self.segments):
            return b""
        segment = self.segments[self._segment]
        remaining = (len(segment) if isinstance(segment, bytes) else segment[1]) - self._offset
        wanted = remaining if n is None or n < 0 else min(n, remaining)
        if isinstance(segment, bytes):
            data = segment[self._offset:self._offset + wanted]
        else:
            self.f.seek(segment[0] + self._offset)
            data = self.f.read(wanted)
            if len(data) != wanted:
                raise DriverError("the downloaded image file is shorter than it was")
        if len(data) == remaining:  # the segment is all sent
            self._segment, self._offset = self._segment + 1, 0
        else:
            self._offset += len(data)
        self.sent += len(data)
        self.progress("importing", self.sent, self.length)
        return data
