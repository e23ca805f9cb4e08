"""zones/ and resource pools: create, read, update, delete (defaults stay)."""

from __future__ import annotations

from region.api.handler import Call, Handler, restful
from region.api.params import Form
from region.api.site import API_PREFIX, Response
from region.db import events, named
from region.db.named import RESOURCE_POOLS, ZONES, NamedKind, NamedObject


def zone_json(z: NamedObject) -> dict:
    return {"id": z.id, "name": z.name, "description": z.description,
            "resource_uri": f"{API_PREFIX}zones/{z.name}/"}


def pool_json(p: NamedObject) -> dict:
    return {"id": p.id, "name": p.name, "description": p.description,
            "resource_uri": f"{API_PREFIX}resourcepool/{p.id}/"}


class _Collection(Handler):
    kind: NamedKind
    render = staticmethod(zone_json)

    @restful("GET")
    async def read(self, call: Call):
        """List them all."""
        return [self.render(o) for o in await call.region.db.run(named.list_thd, self.kind)]

    @restful("POST", admin_only=True)
    async def create(self, call: Call):
        """Create one.

        :param name: Required. Letters, digits, '-' and '_'.
        :type name: String
        :param description: Optional. Free text.
        :type description: String
        """
        form = Form(call.params)
        name = form.name(required=True)
        description = form.text("description") or ""
        form.check()
        kind = self.kind

        def create_thd(cur):
            obj = named.create_thd(cur, kind, name, description)
            events.record_thd(cur, f"{kind.table.upper()}_CREATED", f"{kind.label} {name} created",
                              level="AUDIT", username=call.user.username,
                              object_type=kind.label, object_id=obj.id)
            return obj

        return self.render(await call.region.db.run(create_thd))


class _Item(Handler):
    kind: NamedKind
    key_arg: str
    render = staticmethod(zone_json)

    @restful("GET")
    async def read(self, call: Call):
        """Read one."""
        return self.render(await call.region.db.run(named.get_thd, self.kind, call.path_args[self.key_arg]))

    @restful("PUT", admin_only=True)
    async def update(self, call: Call):
        """Update the name or description.

        :param name: Optional. The new name.
        :type name: String
        :param description: Optional. The new description.
        :type description: String
        """
        form = Form(call.params)
        name = form.name() if "name" in call.params else None
        description = form.text("description")
        form.check()
        kind, key = self.kind, call.path_args[self.key_arg]

        def update_thd(cur):
            obj = named.update_thd(cur, kind, key, name=name, description=description)
            events.record_thd(cur, f"{kind.table.upper()}_UPDATED", f"{kind.label} {obj.name} updated",
                              level="AUDIT", username=call.user.username,
                              object_type=kind.label, object_id=obj.id)
            return obj

        return self.render(await call.region.db.run(update_thd))

    @restful("DELETE", admin_only=True)
    async def delete(self, call: Call):
        """Delete one; the default cannot be deleted."""
        kind, key = self.kind, call.path_args[self.key_arg]

        def delete_thd(cur):
            obj = named.delete_thd(cur, kind, key)
            events.record_thd(cur, f"{kind.table.upper()}_DELETED", f"{kind.label} {obj.name} deleted",
                              level="AUDIT", username=call.user.username,
                              object_type=kind.label, object_id=obj.id)

        await call.region.db.run(delete_thd)
        return Response(204)


class ZonesHandler(_Collection):
    """Manage physical zones."""

    path = "zones/"
    kind = ZONES


class ZoneHandler(_Item):
    """Manage a physical zone (addressed by name)."""

    path = "zones/{name}/"
    kind = ZONES
    key_arg = "name"


class ResourcePoolsHandler(_Collection):
    """Manage resource pools."""

    path = "resourcepools/"
    kind = RESOURCE_POOLS
    render = staticmethod(pool_json)


class ResourcePoolHandler(_Item):
    """Manage a resource pool (addressed by id, or by name)."""

    path = "resourcepool/{id}/"
    kind = RESOURCE_POOLS
    key_arg = "id"
    render = staticmethod(pool_json)


class ResourcePoolsAliasHandler(ResourcePoolsHandler):
    """Manage resource pools (alias: resource-pools/)."""

    path = "resource-pools/"


class ResourcePoolAliasHandler(ResourcePoolHandler):
    """Manage a resource pool (alias: resource-pools/{id}/)."""

    path = "resource-pools/{id}/"
