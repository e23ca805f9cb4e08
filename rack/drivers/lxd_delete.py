"""Deleting LXD VMs (spec §6.5): the instance, then the custom volumes its own
devices use; also what an interrupted compose left behind."""

from __future__ import annotations

import re
from urllib.parse import quote

import pylxd
from pylxd import exceptions as lxd_exc

from common.hosterrors import DriverError
from common.models import HostTarget
from rack.drivers.lxd_compose import VOLUME_PREFIX, OperationFailed, lxd_error as _lxd_error
from rack.drivers.lxd_instances import STOPPED, custom_volume, is_machine


_INSTANCE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,62}$")


class LXDDeleteMixin:
    """delete_vm for LXDDriver (uses its _connect, _run and _get_or_none)."""

    def delete_vm(self, target: HostTarget, instance_name: str, root_disk_only: bool = False) -> list[str]:
        """Delete a VM and the custom volumes its own devices use (spec §6.5).

        A running VM is force-stopped first.  A VM that does not exist is already
        gone: that is a warning, not an error.  Volumes attached through a profile
        are left alone (other instances may use them); a volume that cannot be
        deleted (e.g. still attached elsewhere) is a warning too.  Returns the
        warnings; anything else that fails raises DriverError.

        `root_disk_only` (the region knows of no disk but the root one): the VM is deleted
        without being read first, which is all a stopped VM with no custom volume needs.
        When LXD refuses that (the VM is running, say), the VM is read, stopped and deleted
        as without the hint.  A custom volume attached behind the region's back since
        its last refresh is then left on the host, never deleted unasked.
        """
        if not isinstance(instance_name, str) or not _INSTANCE_NAME.match(instance_name):
            raise DriverError(f"invalid LXD instance name {instance_name!r}")
        project = target.project
        what = f"LXD VM {instance_name!r} in project {project!r}"
        params = {"project": project}
        with self._connect(target, None) as (client, _):
            node = client.api.instances[instance_name]
            if root_disk_only:
                try:
                    if self._run(client, f"cannot delete {what}", node.delete, params=params, missing_ok=True):
                        return []
                except OperationFailed:
                    raise  # LXD accepted the delete and it failed: reading the VM would not help
                except DriverError:
                    pass  # refused (running, or another reason the full path will report)
            try:
                instance = node.get(params=params).json()["metadata"]
            except lxd_exc.NotFound as e:
                return [f"{what} not found; nothing to delete (LXD said: {_lxd_error(e)})",
                        *self._delete_leftover_volumes(client, project, instance_name)]
            except lxd_exc.LXDAPIException as e:
                raise DriverError(f"cannot read {what}: {_lxd_error(e)}") from None
            if not is_machine(instance):
                raise DriverError(f"refusing to delete {what}: it is a "
                                  f"{instance.get('type') or 'instance'}, not a virtual machine or container")
            volumes = [ref for dev in (instance.get("devices") or {}).values()
                       if isinstance(dev, dict) and (ref := custom_volume(dev))]
            if instance.get("status_code") != STOPPED:
                self._run(client, f"cannot stop {what}", node.state.put, params=params,
                          json={"action": "stop", "force": True, "timeout": 30})
            warnings = []
            if not self._run(client, f"cannot delete {what}", node.delete, params=params,
                             missing_ok=True):
                warnings.append(f"{what} disappeared while it was being deleted")
            for pool, volume in volumes:
                vol_node = client.api.storage_pools[quote(pool, safe="")].volumes.custom[
                    quote(volume, safe="")]
                try:
                    if not self._run(client, "", vol_node.delete, params=params, missing_ok=True):
                        warnings.append(f"storage volume {volume!r} in pool {pool!r} (used by "
                                        f"{what}) was already gone")
                except DriverError as e:
                    warnings.append(f"{what} was deleted, but not its storage volume {volume!r} "
                                    f"in pool {pool!r}: {e}")
            return warnings

    # -- helpers ---------------------------------------------------------------------------

    def _delete_leftover_volumes(self, client: pylxd.Client, project: str, instance_name: str) -> list[str]:
        """Volumes a compose made for `instance_name` before it was interrupted
        (named by compose, so nothing else is touched)."""
        prefix = f"{VOLUME_PREFIX}{instance_name}-"
        removed = []
        for pool in client.storage_pools.all():
            node = client.api.storage_pools[quote(pool.name, safe="")].volumes
            names = self._get_or_none(node, params={"project": project}) or []
            for url in names:
                name = url.rsplit("/", 1)[-1].split("?", 1)[0]
                if "/custom/" in url and name.startswith(prefix):
                    self._run(client, f"cannot delete leftover volume {name!r}",
                              node.custom[quote(name, safe="")].delete, params={"project": project},
                              missing_ok=True)
                    removed.append(f"deleted leftover volume {name!r} in pool {pool.name!r}")
        return removed
