"""`vmyard vm-host interfaces|link`: a VM host's interfaces and the networks they are on.

A VM's NIC attaches to a host interface as the interface allows: to a bridge
as a bridged NIC, to an SR-IOV capable port as a virtual function, otherwise
as macvlan.  Linking an interface to a VLAN puts it in that VLAN's space and
subnets, which is what `--interfaces eth0:space=…` in a compose matches.
"""

from __future__ import annotations

import argparse
import json
from typing import Any, Callable
from urllib.parse import quote

from region.cli.client import ApiClient, ClientError
from region.cli.table import render_table

COLUMNS = [("NAME", "name"), ("TYPE", "type"), ("ATTACH", "attach"), ("MAC", "mac_address"),
           ("NUMA", "numa_node"), ("VFS", "sriov_max_vf"), ("SPEED", "speed"), ("FABRIC", "fabric"),
           ("VLAN", "vlan_h"), ("SPACE", "space"), ("SUBNETS", "cidrs"), ("TAGS", "tags")]


def attach_type(iface: dict) -> str:
    """How a VM NIC attaches to this interface (as region.netconstraints.attach_type decides)."""
    if iface.get("attach_type"):
        return iface["attach_type"]
    if iface["type"] == "bridge":
        return "bridge"
    return "sriov" if (iface.get("sriov_max_vf") or 0) > 0 else "macvlan"


def link_speed(mbits: int | None) -> str:
    """1000 -> "1Gb/s", 100 -> "100Mb/s", 2500 -> "2.5Gb/s"; unknown -> "-"."""
    if not mbits:
        return "-"
    if mbits >= 1000:
        return f"{mbits / 1000:g}Gb/s"
    return f"{mbits}Mb/s"


def vlan_label(vlan: dict | None) -> str | None:
    """ "untagged (id 5001)", "vid 30 (id 5002)": the id is what `link --vlan` takes."""
    if not vlan:
        return None
    return f"{'untagged' if vlan['vid'] == 0 else 'vid ' + str(vlan['vid'])} (id {vlan['id']})"


def _row(iface: dict) -> dict:
    return {**iface, "attach": attach_type(iface), "speed": link_speed(iface.get("link_speed")),
            "vlan_h": vlan_label(iface.get("vlan")), "cidrs": [s["cidr"] for s in iface.get("subnets") or []]}


def render(ifaces: list[dict]) -> str:
    return render_table(COLUMNS, [_row(i) for i in ifaces])


def _emit(args, data: Any, text: Callable[[Any], str]) -> None:
    print(json.dumps(data, indent=2) if args.json else text(data))


def _resolve_host(client: ApiClient, ref: str) -> dict:
    from region.cli.vmhost_cli import resolve  # vmhost_cli registers this module: import late

    return resolve(client, ref)


def _path(host: dict, iface: str | None = None) -> str:
    path = f"vm-hosts/{host['id']}/interfaces/"
    return path + quote(iface, safe="") + "/" if iface is not None else path


def cmd_interfaces(args, client: ApiClient) -> None:
    host = _resolve_host(client, args.host)
    _emit(args, client.call("GET", _path(host)), render)


def _link_data(args) -> dict[str, str]:
    if args.vid is not None and (args.vlan is not None or args.subnet is not None or args.unlink):
        raise ClientError("--vid goes with --fabric (or alone, for fabric-0), not with --vlan, --subnet or --unlink")
    data: dict[str, str] = {}
    if args.unlink:
        data["vlan"] = ""
    elif args.vlan is not None:
        data["vlan"] = args.vlan
    elif args.subnet is not None:
        data["subnet"] = args.subnet
    elif args.fabric is not None or args.vid is not None:
        data.update({k: v for k, v in (("fabric", args.fabric), ("vid", args.vid)) if v is not None})
    if args.tags is not None:
        data["tags"] = args.tags
    if not data:
        raise ClientError("nothing to change: give --vlan, --subnet, --fabric/--vid, --unlink or --tags")
    return data


def _outcome(host: dict, iface: dict, data: dict) -> str:
    where = f"{iface['name']} of {host['name']}"
    vlan = iface.get("vlan")
    if vlan:
        cidrs = ", ".join(s["cidr"] for s in iface["subnets"]) or "none"
        line = (f"Linked {where} to {vlan_label(vlan)} on {vlan['fabric']}: "
                f"space {iface['space']}, subnets {cidrs}.")
    elif "vlan" in data:
        line = f"Unlinked {where}: it is on no VLAN."
    else:
        line = f"{where} is on no VLAN."
    if "tags" in data:
        line += f"\nTags of {where}: {','.join(iface['tags']) or '-'}"
    return f"{line}\n\n{render([iface])}"


def cmd_link(args, client: ApiClient) -> None:
    data = _link_data(args)
    host = _resolve_host(client, args.host)
    try:
        iface = client.call("PUT", _path(host, args.interface), data=data)
    except ClientError as e:
        if str(e).startswith("404 "):  # the host was just found: it is the interface that is not
            raise ClientError(f"no interface {args.interface} on VM host {host['name']} "
                              f"(see `vmyard vm-host interfaces {host['name']}`)") from None
        raise
    _emit(args, iface, lambda i: _outcome(host, i, data))


def add_interface_actions(action: Callable[..., argparse.ArgumentParser]) -> None:
    """Register `interfaces` and `link` through vmhost_cli's `action` helper."""
    action("interfaces", cmd_interfaces,
           "list the host's interfaces: how VMs attach to each and the VLAN, space and subnets it is on")
    p = action("link", cmd_link, "put a host interface on a VLAN (by id, subnet or fabric and VID), or tag it")
    p.add_argument("interface", metavar="IFACE", help="interface name or id")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--vlan", metavar="ID", help="VLAN id (see `vmyard vlans list FABRIC`)")
    where.add_argument("--subnet", metavar="SUBNET", help="the VLAN of this subnet (id, CIDR or name)")
    where.add_argument("--fabric", metavar="FABRIC", help="fabric id or name, with --vid (default 0, untagged)")
    where.add_argument("--unlink", action="store_true", help="take the interface off its VLAN")
    p.add_argument("--vid", metavar="N", help="VID on --fabric (fabric-0 when no --fabric is given)")
    p.add_argument("--tags", metavar="A,B", help="comma-separated tags; replaces the interface's tags ('' clears)")
