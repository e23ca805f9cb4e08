"""fabrics/, fabrics/{id}/vlans/, vlans/{id}/ and spaces/ (MAAS 2.0 shapes).

Reads are for any user, writes for administrators.  Every write records an
AUDIT event and answers with the object as it is after the write, rendered
from a catalog read in the same transaction.
"""

from __future__ import annotations

from region.api import network_forms as fields
from region.api.handler import Call, Handler, restful
from region.api.network_json import fabric_json, space_json, vlan_json
from region.api.params import Form
from region.api.site import Response
from region.db import events, networks
from region.db.network_models import Vlan


def audit_thd(cur, call: Call, event_type: str, description: str, object_type: str, object_id) -> None:
    events.record_thd(cur, event_type, description, level="AUDIT", username=call.user.username,
                      object_type=object_type, object_id=object_id)


async def with_catalog(call: Call, fn_thd):
    """Run fn_thd(cur) and read the catalog after it, in one transaction."""
    def run_thd(cur):
        return fn_thd(cur), networks.catalog_thd(cur)

    return await call.region.db.run(run_thd)


def _name(form: Form) -> str | None:
    """Optional name: letters, digits, '-' and '_' (MAAS picks one when it is absent)."""
    return form.name() if form.params.get("name") else None


# -- fabrics ------------------------------------------------------------------------------------

class FabricsHandler(Handler):
    """Manage fabrics."""

    path = "fabrics/"

    @restful("GET")
    async def read(self, call: Call):
        """List all fabrics, each with its VLANs."""
        cat = await call.region.db.run(networks.catalog_thd)
        return [fabric_json(f, cat) for f in cat.fabrics.values()]

    @restful("POST", admin_only=True)
    async def create(self, call: Call):
        """Create a fabric (with its untagged default VLAN).

        :param name: Optional. Defaults to fabric-N.
        :param description: Optional.
        :param class_type: Optional. e.g. 10g, 1g.
        """
        form = Form(call.params)
        name, description = _name(form), form.text("description") or ""
        class_type = form.text("class_type", max_length=256)
        form.check()

        def create_thd(cur):
            fabric = networks.create_fabric_thd(cur, name, class_type, description)
            audit_thd(cur, call, "FABRIC_CREATED", f"fabric {fabric.name} created", "fabric", fabric.id)
            return fabric

        fabric, cat = await with_catalog(call, create_thd)
        return fabric_json(fabric, cat)


class FabricHandler(Handler):
    """Manage a fabric (addressed by id or name)."""

    path = "fabrics/{id}/"

    @restful("GET")
    async def read(self, call: Call):
        """Read a fabric."""
        fabric, cat = await with_catalog(call, lambda cur: networks.get_fabric_thd(cur, call.path_args["id"]))
        return fabric_json(fabric, cat)

    @restful("PUT", admin_only=True)
    async def update(self, call: Call):
        """Update a fabric's name, description or class_type ("" clears it)."""
        form = Form(call.params)
        name, description = _name(form), form.text("description")
        class_type = form.text("class_type", max_length=256)
        form.check()

        def update_thd(cur):
            fabric = networks.update_fabric_thd(cur, call.path_args["id"], name=name, class_type=class_type,
                                                description=description)
            audit_thd(cur, call, "FABRIC_UPDATED", f"fabric {fabric.name} updated", "fabric", fabric.id)
            return fabric

        fabric, cat = await with_catalog(call, update_thd)
        return fabric_json(fabric, cat)

    @restful("DELETE", admin_only=True)
    async def delete(self, call: Call):
        """Delete a fabric and its VLANs; not the default fabric, nor one with subnets."""
        def delete_thd(cur):
            fabric = networks.delete_fabric_thd(cur, call.path_args["id"])
            audit_thd(cur, call, "FABRIC_DELETED", f"fabric {fabric.name} deleted", "fabric", fabric.id)

        await call.region.db.run(delete_thd)
        return Response(204)


# -- VLANs --------------------------------------------------------------------------------------

def _vlan_fields(form: Form, *, creating: bool) -> dict:
    """Validated VLAN fields that were given (space is resolved later, in the transaction)."""
    found = {
        "vid": fields.integer(form, "vid", minimum=0, maximum=4094, required=creating),
        "name": form.text("name", max_length=256),
        "mtu": fields.integer(form, "mtu", minimum=552, maximum=65535),
        "dhcp_on": fields.boolean(form, "dhcp_on"),
        "description": form.text("description"),
    }
    return {k: v for k, v in found.items() if v is not None}


def _with_space_thd(cur, call: Call, changes: dict) -> dict:
    if "space" in call.params:
        return {**changes, "space_id": fields.space_id_thd(cur, call.params.get("space") or "")}
    return changes


class FabricVlansHandler(Handler):
    """Manage the VLANs of a fabric."""

    path = "fabrics/{fabric_id}/vlans/"

    @restful("GET")
    async def read(self, call: Call):
        """List the fabric's VLANs."""
        fabric, cat = await with_catalog(call, lambda cur: networks.get_fabric_thd(cur, call.path_args["fabric_id"]))
        return [vlan_json(v, cat) for v in cat.vlans_of(fabric.id)]

    @restful("POST", admin_only=True)
    async def create(self, call: Call):
        """Create a VLAN on the fabric.

        :param vid: Required. 0-4094, unique on the fabric.
        :param name: Optional. Defaults to the VID.
        :param mtu: Optional. 552-65535, default 1500.
        :param space: Optional. Space id or name.
        :param dhcp_on: Optional. true or false.
        :param description: Optional.
        """
        form = Form(call.params)
        changes = _vlan_fields(form, creating=True)
        form.check()

        def create_thd(cur):
            given = _with_space_thd(cur, call, changes)
            vid = given.pop("vid")
            vlan = networks.create_vlan_thd(cur, call.path_args["fabric_id"], vid, **given)
            audit_thd(cur, call, "VLAN_CREATED", f"VLAN {vlan.vid} created on fabric {vlan.fabric_id}",
                      "vlan", vlan.id)
            return vlan

        vlan, cat = await with_catalog(call, create_thd)
        return vlan_json(vlan, cat)


class _VlanItem(Handler):
    def _locate_thd(self, cur, call: Call) -> Vlan:
        raise NotImplementedError

    @restful("GET")
    async def read(self, call: Call):
        """Read a VLAN."""
        vlan, cat = await with_catalog(call, lambda cur: self._locate_thd(cur, call))
        return vlan_json(vlan, cat)

    @restful("PUT", admin_only=True)
    async def update(self, call: Call):
        """Update a VLAN: vid, name, mtu, space ("undefined" for none), dhcp_on, description."""
        form = Form(call.params)
        changes = _vlan_fields(form, creating=False)
        form.check()

        def update_thd(cur):
            current = self._locate_thd(cur, call)
            vlan = networks.update_vlan_thd(cur, current.id, _with_space_thd(cur, call, changes))
            audit_thd(cur, call, "VLAN_UPDATED", f"VLAN {vlan.vid} updated on fabric {vlan.fabric_id}",
                      "vlan", vlan.id)
            return vlan

        vlan, cat = await with_catalog(call, update_thd)
        return vlan_json(vlan, cat)

    @restful("DELETE", admin_only=True)
    async def delete(self, call: Call):
        """Delete a VLAN; not a fabric's default VLAN, nor one with subnets."""
        def delete_thd(cur):
            vlan = networks.delete_vlan_thd(cur, self._locate_thd(cur, call).id)
            audit_thd(cur, call, "VLAN_DELETED", f"VLAN {vlan.vid} deleted from fabric {vlan.fabric_id}",
                      "vlan", vlan.id)

        await call.region.db.run(delete_thd)
        return Response(204)


class FabricVlanHandler(_VlanItem):
    """Manage a VLAN, addressed by its fabric and VID."""

    path = "fabrics/{fabric_id}/vlans/{vid}/"

    def _locate_thd(self, cur, call: Call) -> Vlan:
        return networks.get_vlan_by_vid_thd(cur, call.path_args["fabric_id"], call.path_args["vid"])


class VlanHandler(_VlanItem):
    """Manage a VLAN, addressed by its id (its resource_uri)."""

    path = "vlans/{id}/"

    def _locate_thd(self, cur, call: Call) -> Vlan:
        return networks.get_vlan_thd(cur, call.path_args["id"])


# -- spaces -------------------------------------------------------------------------------------

class SpacesHandler(Handler):
    """Manage spaces."""

    path = "spaces/"

    @restful("GET")
    async def read(self, call: Call):
        """List all spaces, each with its VLANs and subnets."""
        cat = await call.region.db.run(networks.catalog_thd)
        return [space_json(s, cat) for s in cat.spaces.values()]

    @restful("POST", admin_only=True)
    async def create(self, call: Call):
        """Create a space.

        :param name: Optional. Defaults to space-N.
        :param description: Optional.
        """
        form = Form(call.params)
        name, description = _name(form), form.text("description") or ""
        form.check()

        def create_thd(cur):
            space = networks.create_space_thd(cur, name, description)
            audit_thd(cur, call, "SPACE_CREATED", f"space {space.name} created", "space", space.id)
            return space

        space, cat = await with_catalog(call, create_thd)
        return space_json(space, cat)


class SpaceHandler(Handler):
    """Manage a space (addressed by id or name)."""

    path = "spaces/{id}/"

    @restful("GET")
    async def read(self, call: Call):
        """Read a space."""
        space, cat = await with_catalog(call, lambda cur: networks.get_space_thd(cur, call.path_args["id"]))
        return space_json(space, cat)

    @restful("PUT", admin_only=True)
    async def update(self, call: Call):
        """Update a space's name or description."""
        form = Form(call.params)
        name, description = _name(form), form.text("description")
        form.check()

        def update_thd(cur):
            space = networks.update_space_thd(cur, call.path_args["id"], name=name, description=description)
            audit_thd(cur, call, "SPACE_UPDATED", f"space {space.name} updated", "space", space.id)
            return space

        space, cat = await with_catalog(call, update_thd)
        return space_json(space, cat)

    @restful("DELETE", admin_only=True)
    async def delete(self, call: Call):
        """Delete a space; its VLANs stay, with no space."""
        def delete_thd(cur):
            space = networks.delete_space_thd(cur, call.path_args["id"])
            audit_thd(cur, call, "SPACE_DELETED", f"space {space.name} deleted", "space", space.id)

        await call.region.db.run(delete_thd)
        return Response(204)
