"""The audit/event log."""

from __future__ import annotations

import datetime

import attrs

from region.db.pool import Statement
from region.db.prepared import Prepared


@attrs.frozen
class Event:
    id: int
    created: datetime.datetime
    level: str
    type: str
    description: str
    username: str | None
    object_type: str | None
    object_id: str | None


_RECORD = Prepared(
    "record_event",
    "INSERT INTO events (level, type, description, username, object_type, object_id)"
    " VALUES (%s, %s, %s, %s, %s, %s)")


def record_statement(
    type: str,
    description: str,
    *,
    level: str = "INFO",
    username: str | None = None,
    object_type: str | None = None,
    object_id: str | int | None = None,
) -> Statement[None]:
    return Statement(_RECORD, (level, type, description, username, object_type,
                               None if object_id is None else str(object_id)))


def record_thd(cur, type: str, description: str, **details) -> None:
    """`record_statement` inside the caller's transaction."""
    statement = record_statement(type, description, **details)
    # Nothing reads the insert's outcome: it can ride with the transaction's next round trip.
    cur.execute_later(statement.sql, statement.args)


def list_thd(cur, *, limit: int = 100, object_type: str | None = None) -> list[Event]:
    where, args = ("WHERE object_type = %s", [object_type]) if object_type else ("", [])
    cur.execute(
        "SELECT id, created, level, type, description, username, object_type, object_id"
        f" FROM events {where} ORDER BY id DESC LIMIT %s",
        (*args, limit),
    )
    return [Event(*r) for r in cur.fetchall()]
