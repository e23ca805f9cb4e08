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


@attrs.frozen
class Table:
    """One table group's db functions (each takes the cursor first) and how to audit it.

    :ivar label: what users call one row ("zone"); also the events' object type.
    :ivar event: the event type prefix ("ZONE" -> ZONE_CREATED, ZONE_UPDATED, ZONE_DELETED).
    :ivar list_thd: (cur, **filters) -> rows.
    :ivar get_thd: (cur, key) -> row, or raises NotFound.
    :ivar create_thd: (cur, spec) -> the new row.
    :ivar update_thd: (cur, key, changes) -> the updated row.
    :ivar delete_thd: (cur, key) -> the deleted row.
    :ivar describe: a row's name in event descriptions.
    """

    label: str
    event: str
    list_thd: Callable[..., list]
    get_thd: Callable[[Any, Any], Any]
    create_thd: Callable[[Any, Any], Any]
    update_thd: Callable[[Any, Any, Any], Any]
    delete_thd: Callable[[Any, Any], Any]
    describe: Callable[[Any], str] = attrs.field(default=lambda row: str(row.name))


async def list_all(ctx: Context, table: Table, **filters) -> list:
    return await ctx.db.run(table.list_thd, **filters)


async def get(ctx: Context, table: Table, key) -> Any:
    return await ctx.db.run(table.get_thd, key)


async def create(ctx: Context, table: Table, spec) -> Any:
    def create_thd(cur):
        row = table.create_thd(cur, spec)
        ctx.audit_thd(cur, f"{table.event}_CREATED", f"{table.label} {table.describe(row)} created",
                      table.label, row.id)
        return row

    return await ctx.db.run(create_thd)


async def update(ctx: Context, table: Table, key, changes) -> Any:
    def update_thd(cur):
        row = table.update_thd(cur, key, changes)
        ctx.audit_thd(cur, f"{table.event}_UPDATED", f"{table.label} {table.describe(row)} updated",
                      table.label, row.id)
        return row

    return await ctx.db.run(update_thd)


async def delete(ctx: Context, table: Table, key) -> Any:
    def delete_thd(cur):
        row = table.delete_thd(cur, key)
        ctx.audit_thd(cur, f"{table.event}_DELETED", f"{table.label} {table.describe(row)} deleted",
                      table.label, row.id)
        return row

    return await ctx.db.run(delete_thd)
