"""fabrics/, fabrics/{id}/vlans/, vlans/{id}/ and spaces/ (MAAS 2.0 shapes).

Reads are for any user, writes for administrators.  Every write records an
AUDIT event and answers with the object as it is after the write, rendered
from a catalog read in the same transaction.
"""

from __future__ import annotations

from functools import partial

from region.api import network_forms as forms
from region.api.crud_handlers import CrudCollection, CrudItem
from region.api.handler import Call
from region.api.network_json import catalogued, fabric_json, space_json, vlan_json
from region.services.networks import FABRIC_VLANS, FABRICS, SPACES, VLANS

# -- fabrics ------------------------------------------------------------------------------------


class FabricsHandler(CrudCollection):
    """Manage fabrics."""

    path = "fabrics/"
    table = FABRICS
    render = staticmethod(catalogued(fabric_json))
    spec = staticmethod(forms.fabric_fields)
    docs = {
        "read": "List all fabrics, each with its VLANs.",
        "create": """Create a fabric (with its untagged default VLAN).

        :param name: Optional. Defaults to fabric-N.
        :param description: Optional.
        :param class_type: Optional. e.g. 10g, 1g.
        """,
    }


class FabricHandler(CrudItem):
    """Manage a fabric (addressed by id or name)."""

    path = "fabrics/{id}/"
    table = FABRICS
    render = staticmethod(catalogued(fabric_json))
    changes = staticmethod(forms.fabric_fields)
    docs = {
        "read": "Read a fabric.",
        "update": """Update a fabric's name, description or class_type ("" clears it).""",
        "delete": "Delete a fabric and its VLANs; not the default fabric, nor one with subnets.",
    }


# -- VLANs --------------------------------------------------------------------------------------

_VLAN_ITEM_DOCS = {
    "read": "Read a VLAN.",
    "update": """Update a VLAN: vid, name, mtu, space ("undefined" for none), dhcp_on, description.""",
    "delete": "Delete a VLAN; not a fabric's default VLAN, nor one with subnets.",
}


class FabricVlansHandler(CrudCollection):
    """Manage the VLANs of a fabric."""

    path = "fabrics/{fabric_id}/vlans/"
    table = FABRIC_VLANS
    render = staticmethod(catalogued(vlan_json))
    spec = staticmethod(partial(forms.vlan_fields, creating=True))
    docs = {
        "read": "List the fabric's VLANs.",
        "create": """Create a VLAN on the fabric.

        :param vid: Required. 0-4094, unique on the fabric.
        :param name: Optional. Defaults to the VID.
        :param mtu: Optional. 552-65535, default 1500.
        :param space: Optional. Space id or name.
        :param dhcp_on: Optional. true or false.
        :param description: Optional.
        """,
    }

    def filters(self, call: Call) -> dict:
        return {"fabric": call.path_args["fabric_id"]}



class _VlanItem(CrudItem):
    render = staticmethod(catalogued(vlan_json))
    changes = staticmethod(partial(forms.vlan_fields, creating=False))


class FabricVlanHandler(_VlanItem):
    """Manage a VLAN, addressed by its fabric and VID."""

    path = "fabrics/{fabric_id}/vlans/{vid}/"
    table = FABRIC_VLANS
    docs = _VLAN_ITEM_DOCS

    def key(self, call: Call) -> tuple[str, str]:
        return call.path_args["fabric_id"], call.path_args["vid"]


class VlanHandler(_VlanItem):
    """Manage a VLAN, addressed by its id (its resource_uri)."""

    path = "vlans/{id}/"
    table = VLANS
    docs = _VLAN_ITEM_DOCS


# -- spaces -------------------------------------------------------------------------------------

class SpacesHandler(CrudCollection):
    """Manage spaces."""

    path = "spaces/"
    table = SPACES
    render = staticmethod(catalogued(space_json))
    spec = staticmethod(forms.space_fields)
    docs = {
        "read": "List all spaces, each with its VLANs and subnets.",
        "create": """Create a space.

        :param name: Optional. Defaults to space-N.
        :param description: Optional.
        """,
    }


class SpaceHandler(CrudItem):
    """Manage a space (addressed by id or name)."""

    path = "spaces/{id}/"
    table = SPACES
    render = staticmethod(catalogued(space_json))
    changes = staticmethod(forms.space_fields)
    docs = {
        "read": "Read a space.",
        "update": "Update a space's name or description.",
        "delete": "Delete a space; its VLANs stay, with no space.",
    }
