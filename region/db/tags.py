"""Tags: named labels on machines (MAAS's Tag).

The tag rows hold the tag's own fields; which machines carry a tag is
`machines.tags`, so renaming or deleting a tag rewrites those arrays in the
same transaction.
"""

from __future__ import annotations

import attrs
import psycopg2.errors

from region.db import machines
from region.db.errors import FieldError, NotFound


@attrs.frozen
class Tag:
    id: int
    name: str
    definition: str
    comment: str
    kernel_opts: str


_COLUMNS = "id, name, definition, comment, kernel_opts"
EDITABLE = ("name", "definition", "comment", "kernel_opts")


def _duplicate() -> FieldError:
    return FieldError("name", "Tag with this Name already exists.")


def list_thd(cur) -> list[Tag]:
    cur.execute(f"SELECT {_COLUMNS} FROM tags ORDER BY id")
    return [Tag(*r) for r in cur.fetchall()]


def get_thd(cur, name: str, *, for_update: bool = False) -> Tag:
    cur.execute(f"SELECT {_COLUMNS} FROM tags WHERE name = %s" + (" FOR UPDATE" if for_update else ""), (name,))
    row = cur.fetchone()
    if row is None:
        raise NotFound("Tag")
    return Tag(*row)


def create_thd(cur, name: str, *, definition: str = "", comment: str = "", kernel_opts: str = "") -> Tag:
    cur.execute("SAVEPOINT tag_create")
    try:
        cur.execute(f"INSERT INTO tags (name, definition, comment, kernel_opts) VALUES (%s, %s, %s, %s)"
                    f" RETURNING {_COLUMNS}", (name, definition, comment, kernel_opts))
    except psycopg2.errors.UniqueViolation:
        cur.execute("ROLLBACK TO SAVEPOINT tag_create")
        raise _duplicate() from None
    return Tag(*cur.fetchone())


def update_thd(cur, name: str, changes: dict[str, str]) -> Tag:
    """Change a tag's fields; a new name is carried over to every machine with the tag."""
    if set(changes) - set(EDITABLE):
        raise ValueError(f"not updatable: {sorted(set(changes) - set(EDITABLE))}")
    current = get_thd(cur, name, for_update=True)
    if not changes:
        return current
    assignments = ", ".join(f"{column} = %s" for column in changes)
    cur.execute("SAVEPOINT tag_update")
    try:
        cur.execute(f"UPDATE tags SET {assignments}, updated = now() WHERE id = %s RETURNING {_COLUMNS}",
                    (*changes.values(), current.id))
    except psycopg2.errors.UniqueViolation:
        cur.execute("ROLLBACK TO SAVEPOINT tag_update")
        raise _duplicate() from None
    updated = Tag(*cur.fetchone())
    if updated.name != current.name:
        cur.execute("UPDATE machines SET tags = array_replace(tags, %s, %s), updated = now()"
                    " WHERE %s = ANY(tags)", (current.name, updated.name, current.name))
    return updated


def delete_thd(cur, name: str) -> Tag:
    """Delete a tag and take it off every machine."""
    tag = get_thd(cur, name, for_update=True)
    cur.execute("DELETE FROM tags WHERE id = %s", (tag.id,))
    cur.execute("UPDATE machines SET tags = array_remove(tags, %s), updated = now() WHERE %s = ANY(tags)",
                (tag.name, tag.name))
    return tag


def update_nodes_thd(cur, name: str, add: list[str], remove: list[str]) -> tuple[int, int]:
    """Put the tag on the machines `add` names and take it off those `remove` names.

    Unknown system ids are skipped; the counts are of the machines found, as
    in MAAS.  The machine rows are locked so concurrent tag changes do not
    overwrite each other.
    """
    tag = get_thd(cur, name)
    found = {}
    wanted = sorted(set(add) | set(remove))
    if wanted:
        cur.execute("SELECT id, system_id, tags FROM machines WHERE system_id = ANY(%s) ORDER BY id FOR UPDATE",
                    (wanted,))
        found = {system_id: (machine_id, list(tags)) for machine_id, system_id, tags in cur.fetchall()}
    to_add = [sid for sid in dict.fromkeys(add) if sid in found]
    to_remove = [sid for sid in dict.fromkeys(remove) if sid in found]
    for sid in to_add:
        machine_id, current = found[sid]
        if tag.name not in current:
            current.append(tag.name)
            machines.update_thd(cur, machine_id, {"tags": current})
    for sid in to_remove:
        machine_id, current = found[sid]
        if tag.name in current:
            current[:] = [t for t in current if t != tag.name]
            machines.update_thd(cur, machine_id, {"tags": current})
    return len(to_add), len(to_remove)
