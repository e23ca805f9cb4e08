"""What the web UI's live updates compare (region/ui/live.py polls it)."""

from __future__ import annotations

from region.db import ui_changes
from region.services.context import Context


async def changes_fingerprint(ctx: Context) -> str:
    """A string that differs whenever a VM host, machine or image changed or an event was recorded."""
    return await ctx.db.run(ui_changes.fingerprint_thd)
