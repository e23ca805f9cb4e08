"""Small process helpers shared by the region and the rack."""

from __future__ import annotations

import os


def process_exists(pid: int) -> bool:
    """Whether a process with this PID exists (ours or another user's)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
