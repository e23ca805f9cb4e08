"""Zones and resource pools: named groups with one undeletable default.

The two tables have the same shape, so one set of functions serves both,
parameterised by a `NamedKind`.
"""

from __future__ import annotations

import attrs
import psycopg2.errors

from region.db.errors import FieldError, NotFound, Refused


@attrs.frozen
class NamedKind:
    """:ivar delete_moves_users: deleting one moves its VM hosts and machines to the default and
        deleting a missing one does nothing (MAAS's zones); otherwise one in use is refused."""

    table: str
    label: str  # what users call it: "zone", "resource pool"
    reference: str  # the column VM hosts and machines point at it with
    order: str  # the list's ORDER BY
    delete_moves_users: bool


_USERS = ("vm_hosts", "machines")
ZONES = NamedKind("zones", "zone", "zone_id", order="lower(name), name", delete_moves_users=True)
RESOURCE_POOLS = NamedKind("resource_pools", "resource pool", "pool_id", order="id", delete_moves_users=False)


@attrs.frozen
class NamedObject:
    id: int
    name: str
    description: str
    is_default: bool


_COLUMNS = "id, name, description, is_default"


def _row(r) -> NamedObject:
    return NamedObject(*r)


def list_thd(cur, kind: NamedKind) -> list[NamedObject]:
    cur.execute(f"SELECT {_COLUMNS} FROM {kind.table} ORDER BY {kind.order}")
    return [_row(r) for r in cur.fetchall()]


def get_thd(cur, kind: NamedKind, key: str | int) -> NamedObject:
    """By id (an int or all-digit string) or by name."""
    if isinstance(key, int) or str(key).isdigit():
        cur.execute(f"SELECT {_COLUMNS} FROM {kind.table} WHERE id = %s", (int(key),))
    else:
        cur.execute(f"SELECT {_COLUMNS} FROM {kind.table} WHERE name = %s", (key,))
    r = cur.fetchone()
    if r is None:
        raise NotFound(kind.label)
    return _row(r)


def get_default_thd(cur, kind: NamedKind) -> NamedObject:
    cur.execute(f"SELECT {_COLUMNS} FROM {kind.table} WHERE is_default")
    return _row(cur.fetchone())


def _duplicate(kind: NamedKind) -> FieldError:
    return FieldError("name", f"{kind.label.capitalize()} with this Name already exists.")


def create_thd(cur, kind: NamedKind, name: str, description: str) -> NamedObject:
    cur.execute("SAVEPOINT named_create")
    try:
        cur.execute(
            f"INSERT INTO {kind.table} (name, description) VALUES (%s, %s) RETURNING {_COLUMNS}",
            (name, description),
        )
    except psycopg2.errors.UniqueViolation:
        cur.execute("ROLLBACK TO SAVEPOINT named_create")
        raise _duplicate(kind) from None
    return _row(cur.fetchone())


def update_thd(cur, kind: NamedKind, key: str | int, *, name: str | None, description: str | None) -> NamedObject:
    current = get_thd(cur, kind, key)
    cur.execute("SAVEPOINT named_update")
    try:
        cur.execute(
            f"UPDATE {kind.table} SET name = %s, description = %s, updated = now()"
            f" WHERE id = %s RETURNING {_COLUMNS}",
            (
                current.name if name is None else name,
                current.description if description is None else description,
                current.id,
            ),
        )
    except psycopg2.errors.UniqueViolation:
        cur.execute("ROLLBACK TO SAVEPOINT named_update")
        raise _duplicate(kind) from None
    return _row(cur.fetchone())


def delete_thd(cur, kind: NamedKind, key: str | int) -> NamedObject | None:
    """The deleted row; None when a kind whose deletes move users found nothing to delete."""
    try:
        obj = get_thd(cur, kind, key)
    except NotFound:
        if kind.delete_moves_users:
            return None
        raise
    if obj.is_default:
        raise Refused(f"This is the default {kind.label}, it cannot be deleted.")
    if kind.delete_moves_users:
        default = get_default_thd(cur, kind)
        for table in _USERS:
            cur.execute(f"UPDATE {table} SET {kind.reference} = %s WHERE {kind.reference} = %s", (default.id, obj.id))
    else:
        _refuse_if_used_thd(cur, kind, obj)
    cur.execute(f"DELETE FROM {kind.table} WHERE id = %s", (obj.id,))
    return obj


def _refuse_if_used_thd(cur, kind: NamedKind, obj: NamedObject) -> None:
    users = []
    for table, what in zip(_USERS, ("VM host", "machine")):
        cur.execute(f"SELECT count(*) FROM {table} WHERE {kind.reference} = %s", (obj.id,))
        count = cur.fetchone()[0]
        if count:
            users.append(f"{count} {what}{'s' if count > 1 else ''}")
    if users:
        raise Refused(f"The {kind.label} {obj.name} is used by {' and '.join(users)}; move them to another "
                      f"{kind.label} first.")
