"""Powering LXD virtual machines and containers on and off (spec §6.5).

`LXDPowerMixin` is mixed into `LXDDriver` (rack/drivers/lxd.py) and uses its `_connect`
and `_run`.  A container composed empty (no image yet) cannot start: LXD's reason is then
followed by a hint to deploy it first.
"""

from __future__ import annotations

import re

from pylxd import exceptions as lxd_exc

from common.hosterrors import DriverError
from common.models import CONTAINER, HostTarget
from rack.drivers.lxd_compose import lxd_error
from rack.drivers.lxd_instances import STOPPED, is_machine, kind, power_state

FROZEN = 110
POWER_TIMEOUT = 120  # seconds a start/stop operation may take in all
POWER_ACTIONS = ("on", "off", "query")
_ANY_INSTANCE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,62}$")  # existing ones, safe in a URL


def is_empty_container(instance: dict) -> bool:
    """A container composed empty (`source: none`): never made from an image, so LXD has no
    root filesystem to start."""
    return instance.get("type") == CONTAINER and "volatile.base_image" not in (instance.get("config") or {})


class LXDPowerMixin:
    """power_state, power_on and power_off for LXDDriver."""

    def power_state(self, target: HostTarget, instance_name: str) -> str:
        return self._power_call(target, instance_name, "query")

    def power_on(self, target: HostTarget, instance_name: str) -> str:
        return self._power_call(target, instance_name, "on")

    def power_off(self, target: HostTarget, instance_name: str) -> str:
        return self._power_call(target, instance_name, "off")

    def _power_call(self, target: HostTarget, instance_name: str, action: str) -> str:
        if not isinstance(instance_name, str) or not _ANY_INSTANCE_NAME.match(instance_name):
            raise DriverError(f"invalid LXD instance name {instance_name!r}")
        if action not in POWER_ACTIONS:
            raise DriverError(f"unknown power action {action!r} (on, off or query)")
        with self._connect(target, None) as (client, _):
            return self._power(client, target.project, instance_name, action)

    def _power(self, client, project: str, name: str, action: str) -> str:
        """Query, start or force-stop a VM or container (spec §6.5); the state afterwards.

        Running (101, 103) is "on"; Stopped (102) and Frozen (110) are "off".  Powering on
        a frozen instance unfreezes it; powering off stops anything that is not stopped (a
        frozen one too).  A change is waited for, at most POWER_TIMEOUT s."""
        params = {"project": project}
        node = client.api.instances[name]
        instance = self._read(node, params, name, project)
        what = f"LXD {kind(instance.get('type'))} {name!r} in project {project!r}"
        code = instance.get("status_code")
        state = power_state(code)
        if action == "query" or (action == "on" and state == "on") \
                or (action == "off" and code == STOPPED):
            return state
        if action == "on":
            verb, body = ("unfreeze", {"action": "unfreeze"}) if code == FROZEN \
                else ("start", {"action": "start", "timeout": 30})
        else:
            verb, body = "stop", {"action": "stop", "force": True, "timeout": 30}
        try:
            self._run(client, f"cannot {verb} {what}", node.state.put, params=params, json=body,
                      op_timeout=POWER_TIMEOUT)
        except DriverError as e:
            # Someone else may have got there first ("already running/stopped").
            if power_state(self._read(node, params, name, project).get("status_code")) == action:
                return action
            if verb == "start" and is_empty_container(instance):
                raise type(e)(f"{e} (a container composed empty has no root filesystem until it is "
                              f"deployed)") from None
            raise
        return power_state(self._read(node, params, name, project).get("status_code"))

    def _read(self, node, params: dict, name: str, project: str) -> dict:
        """The instance, which must be a VM or a container."""
        try:
            instance = node.get(params=params).json()["metadata"]
        except lxd_exc.NotFound:
            raise DriverError(f"no VM or container named {name!r} in LXD project {project!r}") from None
        except lxd_exc.LXDAPIException as e:
            raise DriverError(f"cannot read LXD instance {name!r} in project {project!r}: "
                              f"{lxd_error(e)}") from None
        if not is_machine(instance):
            raise DriverError(f"{name!r} in LXD project {project!r} is a "
                              f"{instance.get('type') or 'instance'}, not a virtual machine or container")
        return instance
