"""Fabrics, VLANs and spaces: table-driven CRUD whose results carry the network catalog.

A network object's JSON names fabrics, VLANs, spaces and subnets, so every row a caller
gets comes as `Catalogued`: the row with the catalog read after it, in the same
transaction.
"""

from __future__ import annotations

from typing import Any, Callable, Generic, TypeVar

import attrs

from region.db import networks
from region.db.network_models import UNDEFINED_SPACE, Vlan
from region.db.networks import NetworkCatalog
from region.services.crud import Table, given
from region.services.errors import FieldError, NotFound

T = TypeVar("T")

CHOICE = "Select a valid choice. That choice is not one of the available choices."


@attrs.frozen
class Catalogued(Generic[T]):
    row: T
    catalog: NetworkCatalog


def catalogued_thd(cur, rows: list) -> list[Catalogued]:
    catalog = networks.catalog_thd(cur)
    return [Catalogued(row, catalog) for row in rows]


# -- fabrics and spaces -------------------------------------------------------------------------

@attrs.frozen
class FabricFields:
    """None: not given (a default on create, unchanged on update)."""

    name: str | None = None  # create: fabric-N
    description: str | None = None
    class_type: str | None = None  # update: "" clears it


@attrs.frozen
class SpaceFields:
    """None: not given (a default on create, unchanged on update)."""

    name: str | None = None  # create: space-N
    description: str | None = None


FABRICS = Table(
    label="fabric",
    event="FABRIC",
    list_thd=networks.list_fabrics_thd,
    get_thd=networks.get_fabric_thd,
    create_thd=lambda cur, f: networks.create_fabric_thd(cur, f.name, f.class_type, f.description or ""),
    update_thd=lambda cur, key, f: networks.update_fabric_thd(cur, key, **given(f)),
    delete_thd=networks.delete_fabric_thd,
    view_thd=catalogued_thd,
)

SPACES = Table(
    label="space",
    event="SPACE",
    list_thd=networks.list_spaces_thd,
    get_thd=networks.get_space_thd,
    create_thd=lambda cur, s: networks.create_space_thd(cur, s.name, s.description or ""),
    update_thd=lambda cur, key, s: networks.update_space_thd(cur, key, **given(s)),
    delete_thd=networks.delete_space_thd,
    view_thd=catalogued_thd,
)


# -- VLANs --------------------------------------------------------------------------------------

@attrs.frozen
class VlanFields:
    """None: not given (a default on create, unchanged on update)."""

    fabric: str | None = None  # create: the fabric (id or name) it goes on
    vid: int | None = None  # required on create
    name: str | None = None
    mtu: int | None = None
    dhcp_on: bool | None = None
    description: str | None = None
    space: str | None = None  # id or name; "" or "undefined": no space


def space_id_thd(cur, key: str) -> int | None:
    """A space by id or name; "" or "undefined" mean no space."""
    if key.strip() in ("", UNDEFINED_SPACE):
        return None
    try:
        return networks.get_space_thd(cur, key.strip()).id
    except NotFound:
        raise FieldError("space", CHOICE) from None


def _vlan_columns_thd(cur, fields: VlanFields) -> dict[str, Any]:
    columns = given(fields, leave_out=("fabric", "space"))
    if fields.space is not None:
        columns["space_id"] = space_id_thd(cur, fields.space)
    return columns


def _create_vlan_thd(cur, fields: VlanFields) -> Vlan:
    columns = _vlan_columns_thd(cur, fields)
    return networks.create_vlan_thd(cur, fields.fabric, columns.pop("vid"), **columns)


def _vlan_table(locate_thd: Callable[[Any, Any], Vlan], list_thd: Callable[..., list]) -> Table:
    """VLANs found by `locate_thd(cur, key)`: by id, or by (fabric, vid)."""
    def update_thd(cur, key, fields: VlanFields) -> Vlan:
        current = locate_thd(cur, key)
        return networks.update_vlan_thd(cur, current.id, _vlan_columns_thd(cur, fields))

    return Table(
        label="VLAN",
        event="VLAN",
        object_type="vlan",
        list_thd=list_thd,
        get_thd=locate_thd,
        create_thd=_create_vlan_thd,
        update_thd=update_thd,
        delete_thd=lambda cur, key: networks.delete_vlan_thd(cur, locate_thd(cur, key).id),
        describe=lambda v, verb: f"VLAN {v.vid} {verb} {'from' if verb == 'deleted' else 'on'} fabric {v.fabric_id}",
        view_thd=catalogued_thd,
    )


def _vlans_of_fabric_thd(cur, fabric: str) -> list[Vlan]:
    return networks.list_vlans_thd(cur, networks.get_fabric_thd(cur, fabric).id)


VLANS = _vlan_table(networks.get_vlan_thd, networks.list_vlans_thd)  # by id
FABRIC_VLANS = _vlan_table(lambda cur, key: networks.get_vlan_by_vid_thd(cur, *key),  # by (fabric, vid)
                           _vlans_of_fabric_thd)
