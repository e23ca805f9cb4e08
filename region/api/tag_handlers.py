"""tags/ (MAAS 2.0 shapes): labels put on machines by hand."""

from __future__ import annotations

from region.api.handler import Call, Handler, operation, restful
from region.api.machine_json import render_views
from region.api.params import Form
from region.api.site import API_PREFIX, Response
from region.db.tags import Tag
from region.services import tags as tag_service
from region.services.tags import NodeChanges, TagFields


def tag_json(tag: Tag) -> dict:
    return {"name": tag.name, "definition": tag.definition, "comment": tag.comment,
            "kernel_opts": tag.kernel_opts, "resource_uri": f"{API_PREFIX}tags/{tag.name}/"}


def _tag_fields(call: Call, *, creating: bool) -> TagFields:
    form = Form(call.params)
    name = form.name(required=creating)
    fields = TagFields(name, *(form.text(f, max_length=4096) for f in ("definition", "comment", "kernel_opts")))
    form.check()
    return fields


class TagsHandler(Handler):
    """Manage all tags."""

    path = "tags/"

    @restful("GET")
    async def read(self, call: Call):
        """List tags, oldest first."""
        return [tag_json(t) for t in await tag_service.list_all(call.ctx)]

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
        return tag_json(await tag_service.create(call.ctx, _tag_fields(call, creating=True)))


class TagHandler(Handler):
    """Manage one tag, identified by its name."""

    path = "tags/{name}/"

    @restful("GET")
    async def read(self, call: Call):
        """Read a tag."""
        return tag_json(await tag_service.get(call.ctx, call.path_args["name"]))

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
        fields = _tag_fields(call, creating=False)
        return tag_json(await tag_service.update(call.ctx, call.path_args["name"], fields))

    @restful("DELETE", admin_only=True)
    async def delete(self, call: Call):
        """Delete a tag; it is taken off every machine."""
        await tag_service.delete(call.ctx, call.path_args["name"])
        return Response(204)

    @operation("GET", "machines")
    async def machines(self, call: Call):
        """List the machines carrying this tag."""
        return render_views(await tag_service.tagged_machines(call.ctx, call.path_args["name"]))

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
        changes = NodeChanges(call.params.getlist("add", split_commas=True),
                              call.params.getlist("remove", split_commas=True), call.params.get("definition"))
        updated = await tag_service.update_nodes(call.ctx, call.path_args["name"], changes)
        return {"added": updated.added, "removed": updated.removed}
