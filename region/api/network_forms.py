"""Field readers and object specifiers for the network endpoints.

The readers check syntax and collect errors in a Form (one 400 for all bad
fields); the `*_thd` resolvers turn a specifier (an id, a name, fabric+vid)
into a row and raise FieldError naming the field when nothing matches.
"""

from __future__ import annotations

import ipaddress
import re

from region.api.params import Form
from region.db import networks
from region.db.errors import FieldError, NotFound
from region.db.network_models import DEFAULT_FABRIC_ID, UNDEFINED_SPACE, Vlan

CHOICE = "Select a valid choice. That choice is not one of the available choices."
_TRUE, _FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off"}


def integer(form: Form, field: str, *, minimum: int | None = None, maximum: int | None = None,
            required: bool = False) -> int | None:
    raw = form.params.get(field)
    if raw is None or raw.strip() == "":
        if required:
            form.error(field, "This field is required.")
        return None
    try:
        value = int(raw.strip())
    except ValueError:
        form.error(field, "Enter a whole number.")
        return None
    if minimum is not None and value < minimum:
        form.error(field, f"Ensure this value is greater than or equal to {minimum}.")
    elif maximum is not None and value > maximum:
        form.error(field, f"Ensure this value is less than or equal to {maximum}.")
    return value


def boolean(form: Form, field: str) -> bool | None:
    raw = form.params.get(field)
    if raw is None:
        return None
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    form.error(field, "Enter true or false.")
    return None


def ip_address(form: Form, field: str) -> str | None:
    """An address, "" to clear it, or None when not given."""
    raw = form.params.get(field)
    if raw is None or raw.strip() == "":
        return raw if raw is None else ""
    try:
        return str(ipaddress.ip_address(raw.strip()))
    except ValueError:
        form.error(field, f"Enter a valid IPv4 or IPv6 address (got {raw!r}).")
        return None


def ip_list(form: Form, field: str) -> list[str] | None:
    """Addresses separated by commas or spaces, possibly repeated (as MAAS accepts them)."""
    if field not in form.params:
        return None
    found = []
    for value in form.params.getlist(field):
        for item in re.split(r"[\s,]+", value.strip()):
            if not item:
                continue
            try:
                found.append(str(ipaddress.ip_address(item)))
            except ValueError:
                form.error(field, f"Enter valid IPv4 or IPv6 addresses (got {item!r}).")
    return found


def cidr(form: Form, field: str = "cidr", *, required: bool = False) -> str | None:
    raw = form.text(field, required=required, max_length=64)
    if raw is None:
        return None
    try:
        return str(ipaddress.ip_network(raw.strip(), strict=False))
    except ValueError:
        form.error(field, f"Enter a valid IPv4 or IPv6 network in CIDR notation (got {raw!r}).")
        return None


def tags(form: Form, field: str = "tags") -> list[str] | None:
    if field not in form.params:
        return None
    return [t for t in form.params.getlist(field, split_commas=True) if t]


# -- specifiers ---------------------------------------------------------------------------------

def space_id_thd(cur, key: str) -> int | None:
    """A space by id or name; "" or "undefined" mean no space."""
    if key.strip() in ("", UNDEFINED_SPACE):
        return None
    try:
        return networks.get_space_thd(cur, key.strip()).id
    except NotFound:
        raise FieldError("space", CHOICE) from None


def vlan_from_params_thd(cur, params, *, default_to_fabric_0: bool) -> Vlan | None:
    """`vlan` (an id), or `fabric` (id or name) with an optional `vid`, or `vid` alone on
    fabric-0; with none of them, fabric-0's untagged VLAN or None."""
    vlan_key, fabric_key, vid = params.get("vlan"), params.get("fabric"), params.get("vid")
    if vlan_key:
        try:
            return networks.get_vlan_thd(cur, vlan_key.strip())
        except NotFound:
            raise FieldError("vlan", CHOICE) from None
    if not fabric_key and not vid:
        return networks.default_vlan_thd(cur) if default_to_fabric_0 else None
    try:
        fabric = networks.get_fabric_thd(cur, fabric_key.strip() if fabric_key else DEFAULT_FABRIC_ID)
    except NotFound:
        raise FieldError("fabric", CHOICE) from None
    try:
        return networks.get_vlan_by_vid_thd(cur, fabric.id, vid.strip() if vid else 0)
    except NotFound:
        raise FieldError("vid", f"No VLAN with VID {vid} on fabric {fabric.name}.") from None
