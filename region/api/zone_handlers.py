"""zones/ and resource pools: create, read, update, delete (defaults stay)."""

from __future__ import annotations

from region.api.crud_handlers import CrudCollection, CrudItem
from region.api.handler import Call
from region.api.params import Form
from region.api.site import API_PREFIX
from region.db.named import NamedObject
from region.services.zones import RESOURCE_POOLS, ZONES, NamedChanges, NamedSpec


def zone_json(z: NamedObject) -> dict:
    return {"id": z.id, "name": z.name, "description": z.description,
            "resource_uri": f"{API_PREFIX}zones/{z.name}/"}


def pool_json(p: NamedObject) -> dict:
    return {"id": p.id, "name": p.name, "description": p.description,
            "resource_uri": f"{API_PREFIX}resourcepool/{p.id}/"}


def _named_spec(call: Call) -> NamedSpec:
    form = Form(call.params)
    spec = NamedSpec(form.name(required=True), form.text("description") or "")
    form.check()
    return spec


def _named_changes(call: Call) -> NamedChanges:
    form = Form(call.params)
    changes = NamedChanges(form.name() if "name" in call.params else None, form.text("description"))
    form.check()
    return changes


class _Collection(CrudCollection):
    render = staticmethod(zone_json)
    spec = staticmethod(_named_spec)
    docs = {
        "read": "List them all.",
        "create": """Create one.

        :param name: Required. Letters, digits, '-' and '_'.
        :type name: String
        :param description: Optional. Free text.
        :type description: String
        """,
    }


class _Item(CrudItem):
    render = staticmethod(zone_json)
    changes = staticmethod(_named_changes)
    docs = {
        "read": "Read one.",
        "update": """Update the name or description.

        :param name: Optional. The new name.
        :type name: String
        :param description: Optional. The new description.
        :type description: String
        """,
        "delete": "Delete one that nothing uses; the default cannot be deleted.",
    }


class ZonesHandler(_Collection):
    """Manage physical zones."""

    path = "zones/"
    table = ZONES


class ZoneHandler(_Item):
    """Manage a physical zone (addressed by name)."""

    path = "zones/{name}/"
    table = ZONES
    key_arg = "name"
    docs = {**_Item.docs, "delete": "Delete one, moving its VM hosts and machines to the default zone (which "
                                    "cannot be deleted); deleting a zone that is not there is not an error."}


class ResourcePoolsHandler(_Collection):
    """Manage resource pools."""

    path = "resourcepools/"
    table = RESOURCE_POOLS
    render = staticmethod(pool_json)


class ResourcePoolHandler(_Item):
    """Manage a resource pool (addressed by id, or by name)."""

    path = "resourcepool/{id}/"
    table = RESOURCE_POOLS
    render = staticmethod(pool_json)


class ResourcePoolsAliasHandler(ResourcePoolsHandler):
    """Manage resource pools (alias: resource-pools/)."""

    path = "resource-pools/"


class ResourcePoolAliasHandler(ResourcePoolHandler):
    """Manage a resource pool (alias: resource-pools/{id}/)."""

    path = "resource-pools/{id}/"
