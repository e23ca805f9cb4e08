"""Statements PostgreSQL parses and plans once per connection instead of on every call.

A compose or a delete runs about a dozen statements; sent as text, PostgreSQL parses, analyses
and plans each one every time, which on a small machine is most of the statement's cost
(~0.3 of ~0.4 ms for the API token check).  A `Prepared` statement is sent as
`EXECUTE name(arguments)`; the connection's first use of it sends `PREPARE name AS ...` in the
same query string, so preparing costs no round trip.  Only statements on hot paths whose
every execution wants the same plan (lookups and writes by key) are prepared; PostgreSQL
still chooses between a custom and a generic plan for them.

A PREPARE is not undone by a rollback, so a query string that carried one and failed leaves
it unknown whether the statement exists (and a transaction that failed before its queued
statements were sent never sent their PREPARE): `forget_after_failure` returns what to run
after the ROLLBACK (DEALLOCATE ALL) and forgets what the connection had prepared.
"""

from __future__ import annotations

import re
from typing import Any

import psycopg2.extensions

_PLACEHOLDER = re.compile(r"%%|%s")


class Prepared:
    """A statement written with psycopg2's %s placeholders, prepared on first use per connection."""

    def __init__(self, name: str, sql: str) -> None:
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
            raise ValueError(f"not a plain statement name: {name!r}")
        count = sum(1 for m in _PLACEHOLDER.finditer(sql) if m.group() == "%s")
        numbers = iter(range(1, count + 1))
        numbered = _PLACEHOLDER.sub(lambda m: "%" if m.group() == "%%" else f"${next(numbers)}", sql)
        self.name = name
        self.sql = sql
        self.prepare = f"PREPARE {name} AS {numbered}".encode()
        self._execute = f"EXECUTE {name}" + (f"({', '.join(['%s'] * count)})" if count else "")

    def execute_text(self, cursor, args: Any) -> bytes:
        return cursor.mogrify(self._execute, args)

    def __repr__(self) -> str:
        return f"Prepared({self.name!r})"


class PreparingConnection(psycopg2.extensions.connection):
    """A psycopg2 connection that knows which `Prepared` statements it holds."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.prepared: set[str] = set()
        self.unsure = False  # a string that carried a PREPARE failed


def query_texts(cursor, query: str | bytes | Prepared, args: Any) -> list[bytes]:
    """What to send for `query` with `args` on the cursor's connection: the statement as text,
    or a `Prepared` one's EXECUTE, preceded by its PREPARE on the connection's first use."""
    if not isinstance(query, Prepared):
        return [cursor.mogrify(query, args)]
    conn = cursor.connection
    held = getattr(conn, "prepared", None)
    if held is None:  # not a PreparingConnection: plain text
        return [cursor.mogrify(query.sql, args)]
    execute = query.execute_text(cursor, args)
    if query.name in held:
        return [execute]
    held.add(query.name)
    conn.unsure = True  # until the string that carries the PREPARE succeeds
    return [query.prepare, execute]


def succeeded(conn) -> None:
    if getattr(conn, "unsure", False):
        conn.unsure = False


def forget_after_failure(conn) -> list[bytes]:
    """What to send after the ROLLBACK of a failed string: the connection's prepared statements
    are dropped when one of them may or may not exist."""
    if not getattr(conn, "unsure", False):
        return []
    conn.prepared.clear()
    conn.unsure = False
    return [b"DEALLOCATE ALL"]
