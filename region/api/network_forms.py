"""Field readers and request parsers for the network endpoints.

The readers check syntax and collect errors in a Form (one 400 for all bad
fields); the parsers turn a request into the typed fields the network services
take.  Which rows a specifier (an id, a name, fabric+vid) names is the
services' business.
"""

from __future__ import annotations

import ipaddress
import re

from region.api.handler import Call
from region.api.params import Form, Params
from region.db import subnets
from region.db.network_models import UNDEFINED_SPACE
from region.services.networks import FabricFields, SpaceFields, VlanFields
from region.services.subnets import InterfaceLink, RangeFields, SubnetFields, VlanRef

_SPACE_READ_ONLY = "A subnet's space is its VLAN's space: set the space on the VLAN instead."
_TRUE, _FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off"}


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


# -- request parsers ----------------------------------------------------------------------------

def _name(form: Form) -> str | None:
    """Optional name: letters, digits, '-' and '_' (MAAS picks one when it is absent)."""
    return form.name() if form.params.get("name") else None


def fabric_fields(call: Call) -> FabricFields:
    form = Form(call.params)
    found = FabricFields(_name(form), form.text("description"), form.text("class_type", max_length=256))
    form.check()
    return found


def space_fields(call: Call) -> SpaceFields:
    form = Form(call.params)
    found = SpaceFields(_name(form), form.text("description"))
    form.check()
    return found


def vlan_fields(call: Call, *, creating: bool) -> VlanFields:
    form = Form(call.params)
    found = VlanFields(
        fabric=call.path_args.get("fabric_id") if creating else None,
        vid=form.integer("vid", minimum=0, maximum=4094, required=creating),
        name=form.text("name", max_length=256),
        mtu=form.integer("mtu", minimum=552, maximum=65535),
        dhcp_on=boolean(form, "dhcp_on"),
        description=form.text("description"),
        space=(call.params.get("space") or "") if "space" in call.params else None,
    )
    form.check()
    return found


def vlan_ref(params: Params) -> VlanRef:
    return VlanRef(params.get("vlan"), params.get("fabric"), params.get("vid"))


def subnet_fields(call: Call, *, creating: bool) -> SubnetFields:
    """The given subnet fields, syntax-checked (containment is checked in the db layer)."""
    form = Form(call.params)
    space = form.params.get("space")
    if space not in (None, "", UNDEFINED_SPACE):
        form.error("space", _SPACE_READ_ONLY)
    found = SubnetFields(
        vlan=vlan_ref(call.params),
        cidr=cidr(form, required=creating),
        name=form.text("name", max_length=255) or None,
        description=form.text("description"),
        gateway_ip=ip_address(form, "gateway_ip"),
        dns_servers=ip_list(form, "dns_servers"),
        managed=boolean(form, "managed"),
        allow_dns=boolean(form, "allow_dns"),
        allow_proxy=boolean(form, "allow_proxy"),
    )
    form.check()
    return found


def range_fields(call: Call, *, creating: bool) -> RangeFields:
    form = Form(call.params)
    range_type = form.text("type", required=creating)
    if range_type is not None and range_type not in subnets.RANGE_TYPES:
        form.error("type", f"Select one of {', '.join(subnets.RANGE_TYPES)}.")
    found = RangeFields(subnet=call.params.get("subnet") or None, type_=range_type,
                        start_ip=ip_address(form, "start_ip") or None, end_ip=ip_address(form, "end_ip") or None,
                        comment=form.text("comment"))
    for field in ("start_ip", "end_ip"):
        if creating and getattr(found, field) is None and field not in form.errors:
            form.error(field, "This field is required.")
    form.check()
    return found


def interface_link(call: Call) -> InterfaceLink:
    form = Form(call.params)
    found = InterfaceLink(subnet=call.params.get("subnet") or None, vlan=vlan_ref(call.params),
                          unlink="vlan" in call.params and not call.params.get("vlan"), tags=tags(form))
    form.check()
    return found
