"""tags/ (MAAS 2.0 shapes): labels put on machines by hand."""

from __future__ import annotations

from region.api.errors import ApiError
from region.api.handler import Call, Handler, operation, restful
from region.api.machine_handlers import render_machines
from region.api.params import Form
from region.api.site import API_PREFIX, Response
from region.db import events, tags


class DefinitionMismatch(ApiError):
    """409: update_nodes was given a definition other than the tag's (MAAS: a stale worker)."""

    status = 409


def tag_json(tag: tags.Tag) -> dict:
    return {"name": tag.name, "definition": tag.definition, "comment": tag.comment,
            "kernel_opts": tag.kernel_opts, "resource_uri": f"{API_PREFIX}tags/{tag.name}/"}


def _tag_fields(form: Form, *, creating: bool) -> dict[str, str]:
    fields = {}
    name = form.name(required=creating)
    if name is not None:
        fields["name"] = name
    for field in ("definition", "comment", "kernel_opts"):
        value = form.text(field, max_length=4096)
        if value is not None:
            fields[field] = value
    form.check()
    return fields


class TagsHandler(Handler):
    """Manage all tags."""

    path = "tags/"

    @restful("GET")
    async def read(self, call: Call):
        """List tags, oldest first."""
        return [tag_json(t) for t in await call.region.db.run(tags.list_thd)]

    @restful("POST", admin_only=True)
    async def create(self, call: Call):
        """Create a tag.

        :param name: Required. Letters, digits, '-' and '_' (it is used in URLs).
        :type name: String
        :param comment: Optional. What the tag is for.
        :type comment: String
        :param definition: Optional. Stored as given; vmyard has no hardware details to evaluate
            it against, so tags are applied with ``update_nodes``.
        :type definition: String
        :param kernel_opts: Optional. Kernel options for machines with this tag.
        :type kernel_opts: String
        """
        fields = _tag_fields(Form(call.params), creating=True)

        def create_thd(cur):
            tag = tags.create_thd(cur, **fields)
            events.record_thd(cur, "TAG_CREATED", f"Tag '{tag.name}' created.", level="AUDIT",
                              username=call.user.username, object_type="tag", object_id=tag.name)
            return tag

        return tag_json(await call.region.db.run(create_thd))


class TagHandler(Handler):
    """Manage one tag, identified by its name."""

    path = "tags/{name}/"

    @restful("GET")
    async def read(self, call: Call):
        """Read a tag."""
        return tag_json(await call.region.db.run(tags.get_thd, call.path_args["name"]))

    @restful("PUT", admin_only=True)
    async def update(self, call: Call):
        """Update a tag; a new name follows the tag onto its machines.

        :param name: Optional. The new name.
        :type name: String
        :param comment: Optional. What the tag is for.
        :type comment: String
        :param definition: Optional. Stored as given.
        :type definition: String
        :param kernel_opts: Optional. Kernel options for machines with this tag.
        :type kernel_opts: String
        """
        fields = _tag_fields(Form(call.params), creating=False)
        old_name = call.path_args["name"]

        def update_thd(cur):
            tag = tags.update_thd(cur, old_name, fields)
            action = f"renamed to '{tag.name}'" if tag.name != old_name else "updated"
            events.record_thd(cur, "TAG_UPDATED", f"Tag '{old_name}' {action}.", level="AUDIT",
                              username=call.user.username, object_type="tag", object_id=tag.name)
            return tag

        return tag_json(await call.region.db.run(update_thd))

    @restful("DELETE", admin_only=True)
    async def delete(self, call: Call):
        """Delete a tag; it is taken off every machine."""
        def delete_thd(cur):
            tag = tags.delete_thd(cur, call.path_args["name"])
            events.record_thd(cur, "TAG_DELETED", f"Tag '{tag.name}' deleted.", level="AUDIT",
                              username=call.user.username, object_type="tag", object_id=tag.name)

        await call.region.db.run(delete_thd)
        return Response(204)

    @operation("GET", "machines")
    async def machines(self, call: Call):
        """List the machines carrying this tag."""
        return await render_machines(call, await call.region.db.run(tags.machines_thd, call.path_args["name"]))

    @operation("GET", "nodes")
    async def nodes(self, call: Call):
        """List the nodes carrying this tag (every node here is a machine)."""
        return await self.machines(call)

    @operation("POST", "update_nodes", admin_only=True)
    async def update_nodes(self, call: Call):
        """Add the tag to machines or take it off them; unknown system ids are skipped.

        :param add: Optional. System id of a machine to tag (repeat, or comma-separated).
        :type add: String
        :param remove: Optional. System id of a machine to untag (repeat, or comma-separated).
        :type remove: String
        :param definition: Optional. If given, it must equal the tag's definition (else 409).
        :type definition: String
        """
        name = call.path_args["name"]
        add = call.params.getlist("add", split_commas=True)
        remove = call.params.getlist("remove", split_commas=True)
        definition = call.params.get("definition")

        def update_nodes_thd(cur):
            tag = tags.get_thd(cur, name, for_update=True)
            if definition is not None and definition != tag.definition:
                raise DefinitionMismatch(f"Definition supplied '{definition}' doesn't match current "
                                         f"definition '{tag.definition}'")
            added, removed = tags.update_nodes_thd(cur, name, add, remove)
            if added or removed:
                events.record_thd(cur, "TAG_NODES_UPDATED",
                                  f"Tag '{name}': added to {added}, removed from {removed} machine(s).",
                                  level="AUDIT", username=call.user.username, object_type="tag", object_id=name)
            return {"added": added, "removed": removed}

        return await call.region.db.run(update_nodes_thd)
