"""Table-driven create/read/update/delete with audit events.

Zones, resource pools, fabrics, VLANs, spaces, subnets and IP ranges all have the same
life: list, read one, create, update some fields, delete (with the db layer refusing
what is in use).  A `Table` names the db functions and the audit vocabulary once; the
five functions below are the whole service for such a resource.
"""

from __future__ import annotations

from typing import Any, Callable

import attrs

from region.services.context import Context


def given(fields: Any, *, leave_out: tuple[str, ...] = ()) -> dict[str, Any]:
    """The fields of an attrs value that were given (not None), as db keyword arguments."""
    return {k: v for k, v in attrs.asdict(fields, recurse=False).items() if v is not None and k not in leave_out}


def _rows_as_they_are(cur, rows: list) -> list:
    return rows


@attrs.frozen
class Table:
    """One table group's db functions (each takes the cursor first) and how to audit it.

    :ivar label: what users call one row ("zone").
    :ivar event: the event type prefix ("ZONE" -> ZONE_CREATED, ZONE_UPDATED, ZONE_DELETED).
    :ivar list_thd: (cur, **filters) -> rows.
    :ivar get_thd: (cur, key) -> row, or raises NotFound.
    :ivar create_thd: (cur, spec) -> the new row.
    :ivar update_thd: (cur, key, changes) -> the updated row.
    :ivar delete_thd: (cur, key) -> the deleted row, or None when there was nothing to delete
        and the table treats that as done (MAAS's zones).
    :ivar describe: (row, "created") -> the event's description; "<label> <name> created" by default.
    :ivar object_type: the events' object type; the label by default.
    :ivar view_thd: (cur, rows) -> what callers get for the rows listed, read or written, in the
        same transaction (network rows come with the catalog they are rendered against).
    """

    label: str
    event: str
    list_thd: Callable[..., list]
    get_thd: Callable[[Any, Any], Any]
    create_thd: Callable[[Any, Any], Any]
    update_thd: Callable[[Any, Any, Any], Any]
    delete_thd: Callable[[Any, Any], Any]
    describe: Callable[[Any, str], str] = attrs.field()
    object_type: str = attrs.field()
    view_thd: Callable[[Any, list], list] = _rows_as_they_are

    @describe.default
    def _by_name(self) -> Callable[[Any, str], str]:
        return lambda row, verb: f"{self.label} {row.name} {verb}"

    @object_type.default
    def _label(self) -> str:
        return self.label


async def list_all(ctx: Context, table: Table, **filters) -> list:
    def list_thd(cur):
        return table.view_thd(cur, table.list_thd(cur, **filters))

    return await ctx.db.run(list_thd)


async def get(ctx: Context, table: Table, key) -> Any:
    def get_thd(cur):
        return table.view_thd(cur, [table.get_thd(cur, key)])[0]

    return await ctx.db.run(get_thd)


async def create(ctx: Context, table: Table, spec) -> Any:
    return await _audited(ctx, table, "created", lambda cur: table.create_thd(cur, spec))


async def update(ctx: Context, table: Table, key, changes) -> Any:
    return await _audited(ctx, table, "updated", lambda cur: table.update_thd(cur, key, changes))


async def delete(ctx: Context, table: Table, key) -> Any:
    """The deleted row, as it was (not viewed: there is nothing left to read with it), or None."""
    return await _audited(ctx, table, "deleted", lambda cur: table.delete_thd(cur, key), view=False)


async def _audited(ctx: Context, table: Table, verb: str, write_thd, *, view: bool = True) -> Any:
    def run_thd(cur):
        row = write_thd(cur)
        if row is None:
            return None
        ctx.audit_thd(cur, f"{table.event}_{verb.upper()}", table.describe(row, verb), table.object_type, row.id)
        return table.view_thd(cur, [row])[0] if view else row

    return await ctx.db.run(run_thd)
