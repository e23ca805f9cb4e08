"""Rack controllers enrolled with this region."""

from __future__ import annotations

from region.db import racks
from region.db.racks import Rack
from region.services.context import Context


async def list_all(ctx: Context) -> list[Rack]:
    """With their connection status."""
    return await ctx.db.run(racks.list_thd)


async def get(ctx: Context, system_id: str) -> Rack:
    return await ctx.db.run(racks.get_thd, system_id)


async def delete(ctx: Context, system_id: str) -> None:
    """Forget a rack and drop its connections to this region: its certificate stops working at once
    here, and within a second in other regions."""
    def delete_thd(cur) -> str:
        fingerprint = racks.delete_thd(cur, system_id)
        ctx.audit_thd(cur, "RACK_DELETED", f"rack {system_id} deleted", "rack", system_id)
        return fingerprint

    ctx.region.rpc.revoke(system_id, await ctx.db.run(delete_thd))
