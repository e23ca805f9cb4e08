"""Would this compose fit?  The web UI asks as the user types, so it can show the region's own
explanation (every shortfall, or the field at fault) before anything is made.

The check is the compose's own reservation (`compose.reserve_thd`: validation, placement over
every recorded VM, networks, SR-IOV) run in a transaction that is then rolled back, so the
answer can never disagree with what a compose would do at that moment; nothing is kept and no
rack is asked.
"""

from __future__ import annotations

from region.db import hosts
from region.services.compose import checked_ask, reserve_thd
from region.services.compose_request import ComposeFields
from region.services.context import Context
from region.services.errors import Forbidden


class _Fits(Exception):
    """Raised inside the transaction to roll the reservation back."""


async def check(ctx: Context, host_id: int | str, fields: ComposeFields) -> None:
    """Returns when the request fits now; raises as `compose.compose` would (FieldError,
    InvalidInput, Conflict with the shortfalls, HostNotReady, Refused)."""
    if not ctx.is_admin:
        raise Forbidden("You must be an administrator to compose.")
    host = await ctx.db.run(hosts.get_thd, host_id)
    ask = checked_ask(host, fields)

    def try_thd(cur):
        reserve_thd(cur, host.id, ask, None, False, ctx.region.region_id)
        raise _Fits()

    try:
        await ctx.db.run(try_thd)
    except _Fits:
        return
