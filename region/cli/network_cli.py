"""`vmyard fabrics|vlans|subnets|spaces ACTION`: the network model.

Fabrics and spaces are addressed by id or name, VLANs by FABRIC VID, subnets
by id, CIDR or name.  `--json` prints what the API returned.
"""

from __future__ import annotations

import argparse
import json
from typing import Any, Callable
from urllib.parse import quote

from region.cli.client import ApiClient, ClientError
from region.cli.table import render_table

FABRIC_COLUMNS = [("ID", "id"), ("NAME", "name"), ("CLASS", "class_type"), ("VIDS", "vids"),
                  ("DESCRIPTION", "description")]
VLAN_COLUMNS = [("ID", "id"), ("FABRIC", "fabric"), ("VID", "vid"), ("NAME", "name"), ("MTU", "mtu"),
                ("SPACE", "space"), ("DHCP", "dhcp_on"), ("DESCRIPTION", "description")]
SUBNET_COLUMNS = [("ID", "id"), ("NAME", "name"), ("CIDR", "cidr"), ("FABRIC", "vlan.fabric"),
                  ("VID", "vlan.vid"), ("SPACE", "space"), ("GATEWAY", "gateway_ip"), ("DNS", "dns_servers")]
SPACE_COLUMNS = [("ID", "id"), ("NAME", "name"), ("VLANS", "vlan_ids"), ("SUBNETS", "cidrs"),
                 ("DESCRIPTION", "description")]
RANGE_COLUMNS = [("ID", "id"), ("TYPE", "type"), ("START", "start_ip"), ("END", "end_ip"),
                 ("SUBNET", "subnet.cidr"), ("COMMENT", "comment")]


def _output(args, data: Any, columns: list[tuple[str, str]], derive=None) -> None:
    """JSON as returned with --json; otherwise a table, `derive` adding display-only keys."""
    if args.json:
        print(json.dumps(data, indent=2))
        return
    rows = data if isinstance(data, list) else [data]
    print(render_table(columns, [{**r, **derive(r)} if derive else r for r in rows]))


def _fabric_extras(f: dict) -> dict:
    return {"vids": [v["vid"] for v in f["vlans"]]}


def _space_extras(s: dict) -> dict:
    return {"vlan_ids": [v["id"] for v in s["vlans"]], "cidrs": [n["cidr"] for n in s["subnets"]]}


def _item(key: str) -> str:
    """A path segment: a CIDR's '/' must be encoded to stay one segment."""
    return quote(str(key), safe="")


def _changes(data: dict) -> dict:
    found = {k: v for k, v in data.items() if v is not None}
    if not found:
        raise ClientError("nothing to update: give at least one option")
    return found


def _bool(value: bool | None) -> str | None:
    return None if value is None else ("true" if value else "false")


def _crud(args, client: ApiClient, collection: str, key: str, columns: list[tuple[str, str]], derive=None, *,
          create: Callable[[Any], dict], update: Callable[[Any], dict] | None = None, deleted: str) -> None:
    """The list, create, show, update and delete actions of one kind of object.

    An object's path is `collection` then the argument named `key`; `create` and `update` build
    the form from the arguments (update: only what was given); `deleted` is formatted with `args`.
    """
    def item() -> str:
        return f"{collection}{_item(getattr(args, key))}/"

    if args.action == "list":
        _output(args, client.call("GET", collection), columns, derive)
    elif args.action == "create":
        _output(args, client.call("POST", collection, data=create(args)), columns, derive)
    elif args.action == "show":
        _output(args, client.call("GET", item()), columns, derive)
    elif args.action == "update":
        data = _changes((update or create)(args))
        _output(args, client.call("PUT", item(), data=data), columns, derive)
    elif args.action == "delete":
        client.call("DELETE", item())
        print(deleted.format(args=args))


def _fabric_data(args) -> dict:
    return {"name": args.name, "description": args.description, "class_type": args.class_type}


def cmd_fabrics(args, client: ApiClient) -> None:
    _crud(args, client, "fabrics/", "fabric", FABRIC_COLUMNS, _fabric_extras, create=_fabric_data,
          deleted="Deleted fabric {args.fabric}.")


def _vlan_data(args) -> dict:
    return {"name": args.name, "mtu": args.mtu, "space": args.space, "dhcp_on": _bool(args.dhcp_on),
            "description": args.description}


def cmd_vlans(args, client: ApiClient) -> None:
    _crud(args, client, f"fabrics/{_item(args.fabric)}/vlans/", "vid", VLAN_COLUMNS,
          create=lambda a: {"vid": a.vid, **_vlan_data(a)}, update=lambda a: {"vid": a.new_vid, **_vlan_data(a)},
          deleted="Deleted VLAN {args.vid} of fabric {args.fabric}.")


def _subnet_data(args) -> dict:
    return {"cidr": args.cidr, "name": args.name, "fabric": args.fabric, "vid": args.vid, "vlan": args.vlan_id,
            "gateway_ip": args.gateway, "dns_servers": args.dns, "description": args.description}


def cmd_subnets(args, client: ApiClient) -> None:
    if args.action != "reserve":
        _crud(args, client, "subnets/", "subnet", SUBNET_COLUMNS, create=_subnet_data,
              deleted="Deleted subnet {args.subnet}.")
    else:
        subnet = client.call("GET", f"subnets/{_item(args.subnet)}/")
        data = {"type": "dynamic" if args.dynamic else "reserved", "subnet": subnet["id"],
                "start_ip": args.start, "end_ip": args.end, "comment": args.comment}
        _output(args, client.call("POST", "ipranges/", data=data), RANGE_COLUMNS)


def cmd_spaces(args, client: ApiClient) -> None:
    _crud(args, client, "spaces/", "space", SPACE_COLUMNS, _space_extras,
          create=lambda a: {"name": a.name, "description": a.description}, deleted="Deleted space {args.space}.")


# -- parsers ------------------------------------------------------------------------------------

def _actions(sub, command: str, what: str, func) -> argparse._SubParsersAction:
    p = sub.add_parser(command, help=f"manage {what}")
    p.set_defaults(func=func, needs_client=True)
    return p.add_subparsers(dest="action", required=True, metavar="ACTION")


def _add_fabrics(sub) -> None:
    actions = _actions(sub, "fabrics", "fabrics", cmd_fabrics)
    actions.add_parser("list", help="list fabrics with their VLAN ids")
    for name, help_ in (("create", "create a fabric (with its untagged VLAN)"), ("update", "update a fabric")):
        p = actions.add_parser(name, help=help_)
        if name == "create":
            p.add_argument("name", nargs="?", help="default: fabric-N")
        else:
            p.add_argument("fabric", help="id or name")
            p.add_argument("--name", help="the new name")
        p.add_argument("--description")
        p.add_argument("--class-type", help='e.g. 10g ("" clears it)')
    for name in ("show", "delete"):
        actions.add_parser(name, help=f"{name} a fabric").add_argument("fabric", help="id or name")


def _vlan_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--name")
    p.add_argument("--mtu", type=int)
    p.add_argument("--space", help='id or name ("undefined" for none)')
    p.add_argument("--dhcp-on", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--description")


def _add_vlans(sub) -> None:
    actions = _actions(sub, "vlans", "VLANs of a fabric", cmd_vlans)
    actions.add_parser("list", help="list a fabric's VLANs").add_argument("fabric", help="fabric id or name")
    for name in ("create", "show", "update", "delete"):
        p = actions.add_parser(name, help=f"{name} a VLAN")
        p.add_argument("fabric", help="fabric id or name")
        p.add_argument("vid", type=int, help="0-4094")
        if name == "update":
            p.add_argument("--vid", dest="new_vid", type=int, help="the new VID")
        if name in ("create", "update"):
            _vlan_options(p)


def _subnet_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fabric", help="fabric id or name (with --vid; default fabric-0)")
    p.add_argument("--vid", type=int, help="VID on the fabric (default 0, untagged)")
    p.add_argument("--vlan-id", type=int, help="the VLAN by id instead of --fabric/--vid")
    p.add_argument("--name", help="default: the CIDR")
    p.add_argument("--gateway")
    p.add_argument("--dns", help="DNS servers, comma-separated")
    p.add_argument("--description")


def _add_subnets(sub) -> None:
    actions = _actions(sub, "subnets", "subnets", cmd_subnets)
    actions.add_parser("list", help="list subnets")
    p = actions.add_parser("create", help="create a subnet")
    p.add_argument("cidr")
    _subnet_options(p)
    p = actions.add_parser("update", help="update a subnet")
    p.add_argument("subnet", help="id, CIDR or name")
    p.add_argument("--cidr")
    _subnet_options(p)
    for name in ("show", "delete"):
        actions.add_parser(name, help=f"{name} a subnet").add_argument("subnet", help="id, CIDR or name")
    p = actions.add_parser("reserve", help="reserve a range of addresses on a subnet")
    p.add_argument("subnet", help="id, CIDR or name")
    p.add_argument("start")
    p.add_argument("end")
    p.add_argument("--comment")
    p.add_argument("--dynamic", action="store_true", help="a dynamic (DHCP) range instead of a reserved one")


def _add_spaces(sub) -> None:
    actions = _actions(sub, "spaces", "spaces", cmd_spaces)
    actions.add_parser("list", help="list spaces")
    p = actions.add_parser("create", help="create a space")
    p.add_argument("name", nargs="?", help="default: space-N")
    p.add_argument("--description")
    p = actions.add_parser("update", help="update a space")
    p.add_argument("space", help="id or name")
    p.add_argument("--name", help="the new name")
    p.add_argument("--description")
    for name in ("show", "delete"):
        actions.add_parser(name, help=f"{name} a space").add_argument("space", help="id or name")


def add_network_parsers(sub) -> None:
    """Register `fabrics`, `vlans`, `subnets` and `spaces` on the vmyard command line."""
    _add_fabrics(sub)
    _add_vlans(sub)
    _add_subnets(sub)
    _add_spaces(sub)
