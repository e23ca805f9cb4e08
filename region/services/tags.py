"""Tags: labels put on machines by hand.  Events name a tag by its name (tags are addressed so)."""

from __future__ import annotations

import attrs

from region.db import tags
from region.db.machines import MachineQuery
from region.db.tags import Tag
from region.services.context import Context
from region.services.crud import given
from region.services.errors import Conflict
from region.services.machines import MachineViews, visible_views_thd


@attrs.frozen
class TagFields:
    """None: not given (empty on create, unchanged on update)."""

    name: str | None = None  # required on create
    definition: str | None = None  # stored as given: there are no hardware details to evaluate it on
    comment: str | None = None
    kernel_opts: str | None = None


@attrs.frozen
class NodeChanges:
    """update_nodes: system ids to tag and to untag; `definition`, if given, must be the tag's."""

    add: list[str] = attrs.Factory(list)
    remove: list[str] = attrs.Factory(list)
    definition: str | None = None


@attrs.frozen
class NodesUpdated:
    added: int
    removed: int


def _audit_thd(ctx: Context, cur, event_type: str, description: str, name: str) -> None:
    ctx.audit_thd(cur, event_type, description, "tag", name)


async def list_all(ctx: Context) -> list[Tag]:
    """Oldest first."""
    return await ctx.db.run(tags.list_thd)


async def get(ctx: Context, name: str) -> Tag:
    return await ctx.db.run(tags.get_thd, name)


async def create(ctx: Context, fields: TagFields) -> Tag:
    def create_thd(cur):
        tag = tags.create_thd(cur, **given(fields))
        _audit_thd(ctx, cur, "TAG_CREATED", f"Tag '{tag.name}' created.", tag.name)
        return tag

    return await ctx.db.run(create_thd)


async def update(ctx: Context, name: str, fields: TagFields) -> Tag:
    """A new name follows the tag onto its machines."""
    def update_thd(cur):
        tag = tags.update_thd(cur, name, given(fields))
        action = f"renamed to '{tag.name}'" if tag.name != name else "updated"
        _audit_thd(ctx, cur, "TAG_UPDATED", f"Tag '{name}' {action}.", tag.name)
        return tag

    return await ctx.db.run(update_thd)


async def delete(ctx: Context, name: str) -> Tag:
    """The tag is taken off every machine."""
    def delete_thd(cur):
        tag = tags.delete_thd(cur, name)
        _audit_thd(ctx, cur, "TAG_DELETED", f"Tag '{tag.name}' deleted.", tag.name)
        return tag

    return await ctx.db.run(delete_thd)


async def tagged_machines(ctx: Context, name: str) -> MachineViews:
    def tagged_thd(cur):
        tag = tags.get_thd(cur, name)  # an unknown tag is NotFound
        return visible_views_thd(cur, ctx, MachineQuery(tags=(tag.name,)))

    return await ctx.db.run(tagged_thd)


async def update_nodes(ctx: Context, name: str, changes: NodeChanges) -> NodesUpdated:
    """Tag and untag machines; unknown system ids are skipped.  A definition other than the
    tag's is refused (Conflict), as MAAS refuses a stale worker."""
    def update_nodes_thd(cur):
        tag = tags.get_thd(cur, name, for_update=True)
        if changes.definition is not None and changes.definition != tag.definition:
            raise Conflict(f"Definition supplied '{changes.definition}' doesn't match current "
                           f"definition '{tag.definition}'")
        added, removed = tags.update_nodes_thd(cur, name, changes.add, changes.remove)
        if added or removed:
            _audit_thd(ctx, cur, "TAG_NODES_UPDATED",
                       f"Tag '{name}': added to {added}, removed from {removed} machine(s).", name)
        return NodesUpdated(added, removed)

    return await ctx.db.run(update_nodes_thd)
