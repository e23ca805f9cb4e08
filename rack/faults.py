"""Test-only fault injection: the rack kills itself at a named step.

`VMYARD_FAULT_RACK=compose-after-create` in the rack's environment makes it SIGKILL
itself once a compose has created the VM on the host, before answering the region: the
region sees the call lost mid-way, as when a rack dies.  Unset, it does nothing.  Never
set it in production.
"""

from __future__ import annotations

import os
import signal

from twisted.logger import Logger

log = Logger()

COMPOSE_AFTER_CREATE = "compose-after-create"

_FAULT = os.environ.get("VMYARD_FAULT_RACK") or None
if _FAULT not in (None, COMPOSE_AFTER_CREATE):  # a typo would silently test nothing
    raise ValueError(f"VMYARD_FAULT_RACK={_FAULT!r}: only {COMPOSE_AFTER_CREATE} is known")


def step(name: str) -> None:
    """Reached step `name`: die here if the fault names it."""
    if name == _FAULT:
        log.warn("VMYARD_FAULT_RACK: killing the rack at {step}", step=name)
        os.kill(os.getpid(), signal.SIGKILL)
