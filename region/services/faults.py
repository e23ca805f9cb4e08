"""Test-only fault injection: the region kills itself at a named step of a compose or deploy.

`VMYARD_FAULT_COMPOSE=<step>` (or `VMYARD_FAULT_DEPLOY=<step>`) in the region's environment (read once, when the region
starts) makes the process SIGKILL itself on reaching that step, so a test can crash
the region at an exact point instead of guessing with timers.  Unset, it does nothing.
Never set it in production.
"""

from __future__ import annotations

import os
import signal

from twisted.logger import Logger

log = Logger()

# Where a compose can be cut short (in order).
AFTER_RESERVE = "after-reserve"  # reservation committed, rack not yet asked
AFTER_RACK_CREATED = "after-rack-created"  # the VM exists on the host, the record is still 'composing'
AFTER_RECORD = "after-record"  # the record is 'ready' (and the event written)
COMPOSE_STEPS = (AFTER_RESERVE, AFTER_RACK_CREATED, AFTER_RECORD)

_COMPOSE_FAULT = os.environ.get("VMYARD_FAULT_COMPOSE") or None
if _COMPOSE_FAULT not in (None, *COMPOSE_STEPS):  # a typo would silently test nothing
    raise ValueError(f"VMYARD_FAULT_COMPOSE={_COMPOSE_FAULT!r}: not one of {', '.join(COMPOSE_STEPS)}")


def _die(variable: str, step: str) -> None:
    log.warn("{variable}: killing the region at step {step}", variable=variable, step=step)
    os.kill(os.getpid(), signal.SIGKILL)


def compose_step(step: str) -> None:
    """Reached `step` of a compose: die here if the fault names it."""
    if step == _COMPOSE_FAULT:
        _die("VMYARD_FAULT_COMPOSE", step)


# Where a deploy can be cut short: the machine is Deploying, the rack not yet asked.
BEFORE_RACK = "before-rack"
DEPLOY_STEPS = (BEFORE_RACK,)

_DEPLOY_FAULT = os.environ.get("VMYARD_FAULT_DEPLOY") or None
if _DEPLOY_FAULT not in (None, *DEPLOY_STEPS):
    raise ValueError(f"VMYARD_FAULT_DEPLOY={_DEPLOY_FAULT!r}: not one of {', '.join(DEPLOY_STEPS)}")


def deploy_step(step: str) -> None:
    """Reached `step` of a deploy: die here if VMYARD_FAULT_DEPLOY names it."""
    if step == _DEPLOY_FAULT:
        _die("VMYARD_FAULT_DEPLOY", step)
