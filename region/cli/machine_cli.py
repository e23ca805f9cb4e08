"""`vmyard machine …` and `vmyard vm-host compose`: VMs and LXD containers as machines."""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any

from region.cli.client import ApiClient, ClientError
from region.cli.table import decimal_bytes, human_bytes, render_key_values, render_table

MIB = 1024 * 1024
LIST_COLUMNS = [("SYSTEM_ID", "system_id"), ("HOSTNAME", "hostname"), ("TYPE", "type_h"), ("STATUS", "status_name"),
                ("POWER", "power_state"), ("CORES", "cpu_count"), ("MEMORY", "memory_h"), ("STORAGE", "storage_h"),
                ("VM HOST", "pod_name"), ("NUMA", "numa"), ("ZONE", "zone_name"), ("POOL", "pool_name")]
DISK_COLUMNS = [("NAME", "name"), ("SIZE", "size_h"), ("POOL", "storage_pool")]
NIC_COLUMNS = [("NAME", "name"), ("MAC", "mac_address"), ("ATTACH", "attach"), ("IPS", "ips")]
_MEMORY = re.compile(r"^(?P<n>[0-9]+(?:\.[0-9]+)?)\s*(?P<unit>[MGT]i?B?)?$", re.IGNORECASE)


def memory_mib(text: str) -> int:
    """'8G', '8GiB', '512M', '2048' (MiB) -> MiB.  G and GiB both mean GiB here, as people mean it."""
    m = _MEMORY.match(text.strip())
    if not m:
        raise ClientError(f"cannot read memory size {text!r}: use e.g. 2048 (MiB), 512M or 8G")
    scale = {"M": 1, "G": 1024, "T": 1024 * 1024}[(m["unit"] or "M")[0].upper()]
    return int(float(m["n"]) * scale)


def instance_kind(m: dict) -> str:
    """"VM" or "container", as listings show a machine's LXD instance type."""
    return "container" if m.get("instance_type") == "container" else "VM"


def _row(m: dict) -> dict:
    return {**m, "type_h": instance_kind(m), "memory_h": human_bytes(m["memory"] * MIB),
            "storage_h": decimal_bytes(m["storage"] * 1000**2), "pod_name": (m.get("pod") or {}).get("name"),
            "numa": ",".join(map(str, m.get("numa_nodes") or [])), "zone_name": m["zone"]["name"],
            "pool_name": m["pool"]["name"]}


def _show(m: dict) -> str:
    pairs = [("Hostname", m["hostname"]), ("System id", m["system_id"]), ("Type", instance_kind(m)),
             ("Status", m["status_name"]),
             ("Power", m["power_state"]), ("VM host", (m.get("pod") or {}).get("name")),
             ("LXD instance", f"{m.get('instance_name')} (project {m.get('project')})"),
             ("Architecture", m["architecture"]), ("Cores", m["cpu_count"]),
             ("Pinned cores", ",".join(map(str, m.get("pinned_cores") or [])) or "-"),
             ("Memory", human_bytes(m["memory"] * MIB) + (" (hugepages)" if m.get("hugepages_backed") else "")),
             ("NUMA nodes", ",".join(map(str, m.get("numa_nodes") or [])) or "-"),
             ("Zone", m["zone"]["name"]), ("Pool", m["pool"]["name"]), ("Owner", m.get("owner")),
             ("Tags", ", ".join(m.get("tag_names") or []) or "-")]
    disks = [{**d, "size_h": decimal_bytes(d["size"])} for d in m["blockdevice_set"]]
    nics = [{**n, "attach": f"{n.get('attach_type') or '-'}:{n.get('attach_name') or '-'}",
             "ips": ",".join(link["ip_address"] for link in n["links"] if link.get("ip_address")) or "-"}
            for n in m["interface_set"]]
    return "\n\n".join([render_key_values(pairs), "Disks\n" + render_table(DISK_COLUMNS, disks),
                        "Interfaces\n" + render_table(NIC_COLUMNS, nics)])


def _emit(args, data: Any, text) -> None:
    print(json.dumps(data, indent=2) if args.json else text(data))


def resolve_machine(client: ApiClient, ref: str) -> dict:
    """A machine by hostname or system id (a hostname wins)."""
    for key in ("hostname", "id"):
        for m in client.call("GET", "machines/", query={key: ref}):
            if ref == m["hostname" if key == "hostname" else "system_id"]:
                return m
    raise ClientError(f"no machine named {ref}")


def cmd_list(args, client: ApiClient) -> None:
    found = client.call("GET", "machines/")
    _emit(args, found, lambda ms: render_table(LIST_COLUMNS, [_row(m) for m in ms]))


def cmd_show(args, client: ApiClient) -> None:
    _emit(args, resolve_machine(client, args.machine), _show)


def _confirmed(question: str) -> bool:
    """Ask on a terminal; without one there is nobody to ask, so the answer is no."""
    if not sys.stdin.isatty():
        return False
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")


def cmd_delete(args, client: ApiClient) -> None:
    m = resolve_machine(client, args.machine)
    what = f"{m['hostname']} ({m['system_id']})"
    instance = instance_kind(m)
    if not args.yes and not _confirmed(f"Delete {what} and its {instance} on {(m.get('pod') or {}).get('name')}?"):
        raise ClientError(f"not deleting {what}: this deletes its {instance} on the VM host and frees what it "
                          f"held; add --yes to confirm")
    client.call("DELETE", f"machines/{m['system_id']}/")
    deleted = {"system_id": m["system_id"], "hostname": m["hostname"], "deleted": True}
    _emit(args, deleted, lambda d: f"Deleted {what} and its {instance}.")


def cmd_power(args, client: ApiClient) -> None:
    m = resolve_machine(client, args.machine)
    if args.action == "power-state":
        state = client.call("GET", f"machines/{m['system_id']}/", op="query_power_state")["state"]
        _emit(args, {"state": state}, lambda d: f"{m['hostname']}: {d['state']}")
        return
    op = "power_on" if args.action == "power-on" else "power_off"
    result = client.call("POST", f"machines/{m['system_id']}/", op=op)
    _emit(args, result, lambda r: f"{r['hostname']}: {r['power_state']}")


def cmd_compose(args, client: ApiClient, host: dict) -> None:
    data = {key: value for key, value in (
        ("cores", args.cores), ("memory", memory_mib(args.memory) if args.memory else None),
        ("storage", args.storage), ("interfaces", args.interfaces), ("hostname", args.hostname),
        ("pinned_cores", args.pinned_cores), ("zone", args.zone), ("pool", args.pool),
        ("architecture", args.architecture), ("hugepages_backed", "true" if args.hugepages else None),
        ("instance_type", args.instance_type),
    ) if value is not None}
    made = client.call("POST", f"vm-hosts/{host['id']}/", op="compose", data=data)
    machine = client.call("GET", f"machines/{made['system_id']}/")
    _emit(args, machine, lambda m: f"Composed {m['hostname']} ({m['system_id']}) on {host['name']}.\n\n{_show(m)}")


def add_compose_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cores", help="vCPUs (default 1)")
    p.add_argument("--memory", help="e.g. 2048 (MiB), 512M, 8G (default 2048 MiB)")
    p.add_argument("--storage", help="label:size(pool),… in GB, e.g. root:20G(fast),data:100")
    p.add_argument("--interfaces", help="label:space=…,subnet=…,vlan=…,ip=…;…")
    p.add_argument("--hostname")
    p.add_argument("--pinned-cores", help="host cores to pin, e.g. 0-3,8")
    p.add_argument("--hugepages", action="store_true", help="back the memory with hugepages")
    p.add_argument("--architecture")
    p.add_argument("--zone")
    p.add_argument("--pool")
    p.add_argument("--instance-type", choices=("virtual-machine", "container"),
                   help="an LXD virtual-machine (default) or container")


def add_machine_parser(sub):
    """The `machine` command; returns its actions so that more can be added (deploy_cli)."""
    p = sub.add_parser("machine", aliases=["machines"],
                       help="list, show, allocate, deploy, release, delete and power machines "
                            "(VMs and containers)")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("list", help="list machines").set_defaults(func=cmd_list, needs_client=True)
    for name, func, help in (("show", cmd_show, "show a machine, its disks and NICs"),
                             ("delete", cmd_delete, "delete a machine and its VM"),
                             ("power-on", cmd_power, "start the VM"), ("power-off", cmd_power, "stop the VM"),
                             ("power-state", cmd_power, "ask the VM host for the VM's power state")):
        a = actions.add_parser(name, help=help)
        a.add_argument("machine", metavar="HOSTNAME|SYSTEM_ID")
        if name == "delete":
            a.add_argument("--yes", action="store_true", help="confirm")
        a.set_defaults(func=func, needs_client=True)
    return actions
