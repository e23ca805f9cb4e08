"""zones/ and resource pools: create, read, update, delete (defaults stay)."""

from __future__ import annotations

from region.api.handler import Call, Handler, restful
from region.api.params import Form
from region.api.site import API_PREFIX, Response
from region.db.named import NamedObject
from region.services import crud
from region.services.crud import Table
from region.services.zones import RESOURCE_POOLS, ZONES, NamedChanges, NamedSpec


def zone_json(z: NamedObject) -> dict:
    return {"id": z.id, "name": z.name, "description": z.description,
            "resource_uri": f"{API_PREFIX}zones/{z.name}/"}


def pool_json(p: NamedObject) -> dict:
    return {"id": p.id, "name": p.name, "description": p.description,
            "resource_uri": f"{API_PREFIX}resourcepool/{p.id}/"}


class _Collection(Handler):
    table: Table
    render = staticmethod(zone_json)

    @restful("GET")
    async def read(self, call: Call):
        """List them all."""
        return [self.render(o) for o in await crud.list_all(call.ctx, self.table)]

    @restful("POST", admin_only=True)
    async def create(self, call: Call):
        """Create one.

        :param name: Required. Letters, digits, '-' and '_'.
        :type name: String
        :param description: Optional. Free text.
        :type description: String
        """
        form = Form(call.params)
        spec = NamedSpec(form.name(required=True), form.text("description") or "")
        form.check()
        return self.render(await crud.create(call.ctx, self.table, spec))


class _Item(Handler):
    table: Table
    key_arg: str
    render = staticmethod(zone_json)

    @restful("GET")
    async def read(self, call: Call):
        """Read one."""
        return self.render(await crud.get(call.ctx, self.table, call.path_args[self.key_arg]))

    @restful("PUT", admin_only=True)
    async def update(self, call: Call):
        """Update the name or description.

        :param name: Optional. The new name.
        :type name: String
        :param description: Optional. The new description.
        :type description: String
        """
        form = Form(call.params)
        changes = NamedChanges(form.name() if "name" in call.params else None, form.text("description"))
        form.check()
        return self.render(await crud.update(call.ctx, self.table, call.path_args[self.key_arg], changes))

    @restful("DELETE", admin_only=True)
    async def delete(self, call: Call):
        """Delete one; the default cannot be deleted."""
        await crud.delete(call.ctx, self.table, call.path_args[self.key_arg])
        return Response(204)


class ZonesHandler(_Collection):
    """Manage physical zones."""

    path = "zones/"
    table = ZONES


class ZoneHandler(_Item):
    """Manage a physical zone (addressed by name)."""

    path = "zones/{name}/"
    table = ZONES
    key_arg = "name"


class ResourcePoolsHandler(_Collection):
    """Manage resource pools."""

    path = "resourcepools/"
    table = RESOURCE_POOLS
    render = staticmethod(pool_json)


class ResourcePoolHandler(_Item):
    """Manage a resource pool (addressed by id, or by name)."""

    path = "resourcepool/{id}/"
    table = RESOURCE_POOLS
    key_arg = "id"
    render = staticmethod(pool_json)


class ResourcePoolsAliasHandler(ResourcePoolsHandler):
    """Manage resource pools (alias: resource-pools/)."""

    path = "resource-pools/"


class ResourcePoolAliasHandler(ResourcePoolHandler):
    """Manage a resource pool (alias: resource-pools/{id}/)."""

    path = "resource-pools/{id}/"
